"""Text Generation Inference: its memory model, its official image, and the flags a plan sets."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum

from vramgate.sizing.allocator import CachingAllocator, ForwardReplay, replay_layers
from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import UNKNOWN_GPU, GpuType
from vramgate.sizing.cuda_context import cuda_context_bytes
from vramgate.sizing.engines.base import (
    ALL_FREE_MEMORY,
    TORCH_DTYPE_NAMES,
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    FreeMemoryRule,
    Launch,
    OtherPort,
    PlanFlags,
    ReleaseRow,
    ReleaseTable,
    Scheduling,
    beyond_newest_read,
    format_fraction,
    parse_version,
    version_label,
)
from vramgate.sizing.engines.options import (
    EXITS,
    LORA,
    SPECULATIVE,
    CommandLine,
    GovernedFlag,
    OptionSyntax,
    PlannedFlag,
)
from vramgate.sizing.memory import KvLayout, WeightFormat
from vramgate.sizing.units import MIB, ceil_div

FLAGS = PlanFlags(
    model="--model-id",
    tensor_parallel="--num-shard",
    pipeline_parallel=None,
    max_model_len="--max-total-tokens",
    max_input_tokens="--max-input-tokens",
    max_num_seqs="--max-concurrent-requests",
    memory_fraction="--cuda-memory-fraction",
    dtype="--dtype",
    kv_cache_dtype="--kv-cache-dtype",
    quantization="--quantize",
    max_num_batched_tokens="--max-batch-prefill-tokens",
    block_size=None,
)
# Read from launcher/src/main.rs (struct Args) of v3.3.5: clap derive with `long` and `env` on every
# option, `short` on --port (-p), --prometheus-port (-p), --env (-e) and the termination timeout (-g).
COMMAND_LINE = CommandLine(
    syntax=OptionSyntax.CLAP,
    source="TGI v3.3.5: launcher/src/main.rs",
    governed=(
        GovernedFlag(("--model-id",), "set spec.model.name or spec.model.source instead"),
        GovernedFlag(("--max-total-tokens",), "set spec.workload.maxSequenceLength instead"),
        GovernedFlag(("--max-input-tokens",), "set spec.workload.maxSequenceLength instead"),
        GovernedFlag(("--max-input-length",), "set spec.workload.maxSequenceLength instead"),
        GovernedFlag(("--max-concurrent-requests",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--max-batch-size",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--max-batch-total-tokens",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--cuda-memory-fraction",), "set spec.gpu.maxMemoryFraction instead"),
        GovernedFlag(("--num-shard",), "set spec.gpu.count instead"),
        GovernedFlag(("--sharded",), "set spec.gpu.count instead"),
        GovernedFlag(("--quantize",), "set spec.model.precision instead"),
        GovernedFlag(("--dtype",), "set spec.model.precision instead"),
        GovernedFlag(("--kv-cache-dtype",), "set spec.model.kvCacheDtype instead"),
        GovernedFlag(("--cuda-graphs",), "the plan sizes the default CUDA graphs"),
        # From 3.0 warm-up computes only each request's last logits; with prefill logprobs, every token's
        GovernedFlag(
            ("--enable-prefill-logprobs",),
            "the plan sizes the warm-up without prefill logprobs (3.0's default)",
        ),
        # Passed to the shards as ROPE_SCALING and ROPE_FACTOR: a stretched context the plan does not read
        # from the model's config.json, as vLLM's --rope-scaling
        GovernedFlag(
            ("--rope-scaling", "--rope-factor"),
            "set spec.model.architecture instead (the plan sizes the shape of the model's own config.json)",
        ),
        GovernedFlag(("--lora-adapters",), LORA),
        GovernedFlag(("--speculate",), SPECULATIVE),
        GovernedFlag(("--help", "-h", "--version", "-V"), EXITS, from_environment=False),
        GovernedFlag(("--port", "-p"), "set spec.runtime.port instead"),
        GovernedFlag(("--hostname",), "probes and the Service reach the server on every interface"),
    ),
    planned=(PlannedFlag(("--max-batch-prefill-tokens",), "max_num_batched_tokens"),),
    repeatable=("--cors-allow-origin",),  # Vec<String>: the launcher's only list option not governed
    # launcher/src/main.rs@v3.3.5 (resolve_attention) and server/text_generation_server/models/globals.py.
    governed_variables=(
        ("ATTENTION", "chooses the attention kernel, and with it the KV block size the plan sizes"),
        (
            "TGI_WIGGLE_ROOM",
            "sets the share of free memory the warm-up leaves to KV blocks, which the plan takes",
        ),
        ("REQUEST_LOGPROBS", "makes warm-up hold every prefill token's logits, which the plan leaves out"),
    ),
)
RUNTIME = EngineRuntime(
    image="ghcr.io/huggingface/text-generation-inference:3.3.5",
    repositories=("ghcr.io/huggingface/text-generation-inference", "huggingface/text-generation-inference"),
    command=(),
    port=80,
    port_flag="--port",
    host_flag=None,
    # The router serves its metrics on the HTTP address at --prometheus-port (launcher/src/main.rs and
    # router/src/server.rs@v3.3.5): the same port for both stops the router at start.
    other_ports=(OtherPort(9000, "--prometheus-port", "its Prometheus metrics"),),
)


def development_build(version: tuple[int, ...]) -> tuple[int, ...]:
    """Where a main-branch build of `version` sorts: after the patch release before it, before itself
    ((0, 9, 3, 1) for 0.9.4.dev; TGI tags no fourth number). A build of an x.y.0 keeps the release's."""
    major, minor, patch = version[:3]
    return (major, minor, patch - 1, 1) if patch > 0 else version


class AddedBack(Enum):
    """Which of the warm-up batch's KV blocks TGI adds back after measuring the free memory."""

    ALLOCATED = "every block the warm-up batch allocated"
    # generate_token returns no batch when every request stopped, else the whole batch: the router, not
    # the server, filters the finished requests out
    UNLESS_ALL_FINISHED = "every block the warm-up batch allocated, none if all its requests finished"


class Warmup(Enum):
    """How TGI's launcher picks `--max-batch-prefill-tokens` when it is not given: the batch warm-up runs."""

    FIXED_4096 = "4096 tokens"
    INPUT_PLUS_50 = "max_input_tokens + 50"
    COMPUTE_OPTIMAL = "the GPUs' fp16 FLOP/s over the model's FLOPs per token (else 4096), capped by "
    "max_position_embeddings and the tokens the launcher's VRAM estimate allows"


@dataclass(frozen=True)
class Release(ReleaseRow):
    """One row of TGI's release table: from `first` on, until the next row. After warm-up prefills its
    largest batch, TGI reads the free memory from the driver (`torch.cuda.mem_get_info`), so its CUDA
    context, the weights and every block the warm-up left reserved count as used; of what is free above
    `(1 - fraction x fraction_wiggle) x total` it keeps `free_kept` as KV blocks, and adds back the blocks
    the warm-up batch held. `source` is where each boundary was read, as file@tag."""

    fraction_wiggle: float  # scales the fraction (TGI_WIGGLE_ROOM from 3.0)
    # The budget subtracts torch's reserved peak only: the CUDA context and non-torch memory lie beside it
    torch_reserved_only: bool
    free_kept: float  # share of the free memory made KV blocks (the 5% wiggle room of 1.4.1-2.4)
    warmup: Warmup
    launcher_cards: tuple[tuple[str, int], ...]  # (card name, fp16 TFLOP/s) the launcher sizes warm-up by
    # vocab-wide tensors of every warm-up token: the logits, and log_softmax's output; none where the server
    # drops the warm-up's prefill logprobs (only each request's last token reaches the head)
    logits_copies: int
    allreduce_outputs_reserved: bool  # TP all-reduces record their outputs on NCCL's stream
    # the warm-up's KV blocks added back to the free memory's: all it allocated, or from 2.1 none when
    # every warm-up request finished at its prefill (one whose max_new_tokens is 1 has)
    added_back: AddedBack
    block_size: int  # tokens per KV block of the default attention: paged 16, FlashInfer 1
    fallback_families: frozenset[str]  # model types the launcher moves off the default attention
    fallback_by_compute_capability: bool  # the fallback is paged (16) below compute capability 8


# The cards the launcher knows, by the name it reads (nvidia-smi's gpu_name, spaces as dashes, lower case:
# compute_type in launcher/src/main.rs, the node label GPU Feature Discovery derives, lower-cased), and
# their dense fp16 TFLOP/s (ComputeType::f16_flop). "nvidia-4090" and "nvidia-t4" match no card nvidia-smi
# names ("NVIDIA GeForce RTX 4090", "Tesla T4"): those cards, as every other, get the 4096-token default.
_CARDS_3_0 = (
    ("nvidia-4090", 82),
    ("nvidia-t4", 65),
    ("nvidia-l4", 121),
    ("nvidia-l40", 181),
    ("nvidia-l40s", 363),
    ("nvidia-a10g", 125),
    ("nvidia-h100-80gb-hbm3", 900),
    ("nvidia-a100-sxm4-80gb", 312),
    ("nvidia-a100", 312),
)
_CARDS_3_1 = (
    *_CARDS_3_0,
    ("nvidia-a40", 149),
    ("nvidia-h100-nvl", 900),
    ("nvidia-h100", 900),
    ("nvidia-a100-sxm4-40gb", 312),
    ("nvidia-a100-80gb-pcie", 312),
    ("nvidia-h200", 989),
)


def _table() -> tuple[Release, ...]:
    table = ReleaseTable(Release)
    add = table.add

    add(
        development_build((0, 9, 4)),
        "main-branch builds from PR #630 to PR #664 (2023-07-19 to 07-20; their Cargo.toml still says "
        "0.9.3): the router takes the total tokens warm-up infers, --max-batch-total-tokens or not; they are "
        "0.98 x total less torch.cuda.max_memory_reserved after warm-up, plus the warm-up batch's blocks. "
        "The CUDA context and memory outside torch's allocator do not count; the forward and warm-up are "
        "0.9.4's",
        "server/text_generation_server/models/flash_causal_lm.py@fe80f536 (warmup), "
        "router/src/main.rs@fe80f536, flash_causal_lm.py@bf94df3c (PR #664, mem_get_info)",
        fraction_wiggle=0.98,
        torch_reserved_only=True,
        free_kept=1.0,
        warmup=Warmup.FIXED_4096,
        launcher_cards=(),
        logits_copies=2,
        allreduce_outputs_reserved=True,
        added_back=AddedBack.ALLOCATED,
        block_size=16,
        fallback_families=frozenset(),
        fallback_by_compute_capability=False,
    )
    add(
        (0, 9, 4),
        "after warm-up KV blocks fill the free memory above (1 - fraction) x total (earlier releases took "
        "--max-batch-total-tokens as given); warm-up prefills --max-batch-prefill-tokens (default 4096) "
        "with prefill logprobs, log_softmax into a new tensor; with TP every all-reduce goes through "
        "torch.distributed, whose NCCL collectives record their outputs on NCCL's stream",
        "server/text_generation_server/models/flash_causal_lm.py@v0.9.4, "
        "router/client/src/client.rs@v0.9.4, launcher/src/main.rs@v0.9.4",
        fraction_wiggle=1.0,
        torch_reserved_only=False,
    )
    add(
        (1, 4, 1),
        "5% wiggle room off the free memory after warm-up; the launcher sets "
        "TORCH_NCCL_AVOID_RECORD_STREAMS=1, so all-reduce outputs free at once",
        "server/text_generation_server/models/flash_causal_lm.py@v1.4.1, launcher/src/main.rs@v1.4.1",
        free_kept=0.95,
        allreduce_outputs_reserved=False,
    )
    add(
        (2, 0, 0),
        "warm-up prefills max_input_tokens + 50 by default",
        "launcher/src/main.rs@v2.0.0",
        warmup=Warmup.INPUT_PLUS_50,
    )
    add(
        (2, 1, 0),
        "the blocks added back are batch.num_blocks of the batch generate_token returns: the whole warm-up "
        "batch, or none when every request finished at its prefill (a full one asks for max_new_tokens = "
        "max_total - max_input = 1), as generate_token then returns no batch",
        "server/text_generation_server/models/flash_causal_lm.py@v2.1.0 (warmup: batch.num_blocks; "
        "generate_token: 'No need to return a batch if we know that all requests stopped'), "
        "router/client/src/v3/client.rs@v2.1.0 (warmup requests)",
        added_back=AddedBack.UNLESS_ALL_FINISHED,
    )
    add(
        (2, 2, 0),
        "the launcher forces flash decoding (256-token blocks) on gemma2",
        "launcher/src/main.rs@v2.2.0, server/text_generation_server/models/globals.py@v2.2.0",
        fallback_families=frozenset({"gemma2"}),
    )
    add(
        (2, 3, 0),
        "FlashInfer is the default attention (1-token blocks) for head dims 64, 128 and 256; other head "
        "dims, gemma2 and falcon get flash decoding (256)",
        "launcher/src/main.rs@v2.3.0 (resolve_attention), server/text_generation_server/models/globals.py"
        "@v2.3.0",
        block_size=1,
        fallback_families=frozenset({"gemma2", "falcon"}),
    )
    add(
        (2, 3, 1),
        "below compute capability 8 the fallback is paged attention (16-token blocks)",
        "launcher/src/main.rs@v2.3.1 (resolve_attention)",
        fallback_by_compute_capability=True,
    )
    add(
        (2, 4, 0),
        "TGI_WIGGLE_ROOM (default 0.90) keeps that share of the free memory; log_softmax in place; falcon "
        "and deepseek_v2 leave FlashInfer, gemma2 no longer",
        "server/text_generation_server/models/globals.py@v2.4.0, "
        "server/text_generation_server/models/flash_causal_lm.py@v2.4.0, launcher/src/main.rs@v2.4.0",
        free_kept=0.90,
        logits_copies=1,
        fallback_families=frozenset({"falcon", "deepseek_v2"}),
    )
    add(
        (3, 0, 0),
        "the wiggle room scales the fraction (free above (1 - fraction x 0.95) x total, all kept); the "
        "launcher sizes warm-up from the GPU's FLOP/s; the server drops prefill logprobs unless "
        "REQUEST_LOGPROBS (--enable-prefill-logprobs) is set, so warm-up computes each request's last "
        "logits only; every warm-up block is added back (batch.num_blocks, read before the prefill)",
        "server/text_generation_server/models/flash_causal_lm.py@v3.0.0 (FlashCausalLMBatch.from_tokenized, "
        "PR #2797), server/text_generation_server/models/globals.py@v3.0.0, launcher/src/main.rs@v3.0.0",
        fraction_wiggle=0.95,
        free_kept=1.0,
        warmup=Warmup.COMPUTE_OPTIMAL,
        launcher_cards=_CARDS_3_0,
        logits_copies=0,
        added_back=AddedBack.ALLOCATED,
    )
    add(
        (3, 1, 0),
        "TGI_WIGGLE_ROOM defaults to 0.93; the launcher knows the A40, H100 NVL, A100 40GB, A100 80GB PCIe "
        "and H200 (PRs #2837, #2941)",
        "server/text_generation_server/models/globals.py@v3.1.0, launcher/src/main.rs@v3.1.0 (Gpu::from)",
        fraction_wiggle=0.93,
        launcher_cards=_CARDS_3_1,
    )
    add(
        (3, 3, 0),
        "TGI_WIGGLE_ROOM defaults to 0.90",
        "server/text_generation_server/models/globals.py@v3.3.0",
        fraction_wiggle=0.90,
    )
    return tuple(table.rows)


RELEASES = _table()
# Releases before the first read took --max-batch-total-tokens as given; they are planned on its rules.
FIRST_RELEASE = next(row for row in RELEASES if len(row.first) == 3)
# The newest release whose source was read: the last row holds up to it.
NEWEST_READ_VERSION = "3.3.7"
LAUNCHER_VRAM_WIGGLE = 0.95  # the launcher's own estimate (ComputeType::vram), whatever the server's


def _launcher_flops_per_token(arch: ModelArchitecture) -> int:
    """Config::flop in launcher/src/main.rs@v3.3.5: attention projections and MLP, all layers."""
    attention = 2 * arch.head_dim * arch.hidden_size * (3 * arch.num_attention_heads + 2 * arch.num_kv_heads)
    experts = 1
    if arch.is_moe:  # config.intermediate_size times routed + shared experts, as the launcher reads them
        shared = arch.shared_expert_intermediate_size // max(arch.moe_intermediate_size, 1)
        experts = arch.num_experts_per_token + shared
    return (attention + 6 * arch.hidden_size * arch.intermediate_size * experts) * arch.num_layers


def _launcher_vram_tokens(arch: ModelArchitecture, gpu: GpuType, shards: int, fraction: float) -> int | None:
    """Config::model_vram and token_vram in launcher/src/main.rs@v3.3.5 (their own arithmetic, kept as
    written); None for quantized checkpoints, as there."""
    if arch.quantization is not None:
        return None
    experts = arch.num_experts if arch.is_moe else 1
    intermediate = arch.intermediate_size
    heads, kv_heads, head_dim, hidden = (
        arch.num_attention_heads,
        arch.num_kv_heads,
        arch.head_dim,
        arch.hidden_size,
    )
    layer = (
        3 * intermediate * experts * hidden + (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    )
    model = (layer * arch.num_layers + 2 * hidden * arch.vocab_size) * 2
    token = (
        kv_heads * 2 * head_dim * 2 * arch.num_layers + (intermediate + intermediate // 2) * experts * 2 * 3
    )
    available = int(gpu.memory_mib * MIB * shards * fraction * LAUNCHER_VRAM_WIGGLE)
    return (available - model) // token if available >= model else None


@functools.lru_cache(maxsize=256)
def _replay_forward(
    arch: ModelArchitecture, tensor_parallel: int, tokens: int, element: int, recorded: bool
) -> ForwardReplay:
    """The warm-up's forward pass through a dense model, tensor by tensor as Python holds them
    (FlashLlamaModel/FlashLlamaLayer/FlashLlamaAttention/LlamaMLP.forward in
    server/text_generation_server/models/custom_modeling/flash_llama_modeling.py, the same from v0.9.4 to
    v3.3.5; FastRMSNorm in layers/layernorm.py@v2.2.0), replayed through the caching allocator. On CUDA
    up to 8192 hidden the norm is flash-attn's dropout_add_ln_fwd, which writes the sum, then the normed
    output, both new; above, PyTorch adds in place and normalizes through fp32 copies. `recorded`: the
    embedding's and each row-parallel layer's all-reduced outputs stay unusable (before 1.4.1 at TP > 1)."""
    pool = CachingAllocator()
    hidden = arch.hidden_size
    query = arch.num_attention_heads // tensor_parallel * arch.head_dim
    key_value = max(1, arch.num_kv_heads // tensor_parallel) * arch.head_dim
    intermediate = arch.intermediate_size // tensor_parallel
    fused = hidden <= 8192

    def tensor(name: str, width: int, element_bytes: int = element) -> None:
        pool.allocate(name, tokens * width * element_bytes)

    def norm(normed: str, added: str, residual: str | None, into: str) -> None:
        """`normed`, `into` = norm(`added`, `residual`): `into` names the sum (a new tensor when fused,
        else `added` itself, added to in place)."""
        if fused:
            if residual is not None:
                tensor(into, hidden)
            tensor(normed, hidden)
            return
        tensor("fp32", hidden, 4)  # hidden_states.to(torch.float32)
        tensor("squares", hidden, 4)  # .pow(2), gone once .mean() returns
        pool.free("squares")
        tensor("scaled", hidden, 4)  # hidden_states * torch.rsqrt(variance + eps)
        pool.free("fp32")
        tensor("half", hidden)  # .to(self.weight.dtype)
        pool.free("scaled")
        tensor(normed, hidden)  # self.weight * hidden_states
        pool.free("half")

    tensor("hidden", hidden)  # the embedding's output, all-reduced
    residual: str | None = None

    def layer(index: int) -> None:
        nonlocal residual
        norm("normed", "hidden", residual, "res")
        res = "res" if fused and residual is not None else "hidden"
        tensor("qkv", query + 2 * key_value)
        tensor("attn", query)
        tensor("attn_output", hidden)  # o_proj, all-reduced
        pool.free("attn")
        pool.free("qkv")
        norm("mlp_input", "attn_output", res, "attn_res")
        attn_res = "attn_res" if fused else "attn_output"
        tensor("gate_up", 2 * intermediate)
        tensor("silu", intermediate)
        tensor("product", intermediate)
        pool.free("silu")
        tensor("mlp_output", hidden)  # down_proj, all-reduced
        pool.free("product")
        pool.free("gate_up")
        # the layer's frame goes; then the loop rebinds its hidden states and residual
        pool.free("normed")
        if res == "res":
            pool.free("res")
        if attn_res == "attn_res":
            pool.free("attn_output", recorded)
        pool.free("mlp_input")
        pool.free("hidden", recorded)
        if residual is not None:
            pool.free(residual, recorded and not fused)
        pool.rename("mlp_output", "hidden")
        pool.rename(attn_res, f"residual{index}")
        residual = f"residual{index}"

    skipped = replay_layers(pool, layer, arch.num_layers)
    norm("final", "hidden", residual, "final_res")
    return ForwardReplay(pool.peak_reserved_bytes + skipped, pool.peak_allocated_bytes)


class TgiModel(EngineModel):
    """Text Generation Inference: warm-up prefills its largest batch, then KV blocks fill the free memory
    the release's rule leaves. TGI reads used memory from the driver, so its CUDA context and every block
    the warm-up left reserved count inside the fraction; decode CUDA graphs are captured after."""

    engine = Engine.TGI
    sliding_window_paged = False
    cuda_context_inside_fraction = True
    # Warm-up samples only its few requests' last tokens, not a row per --max-concurrent-requests.
    sampler_bytes_per_logit = 0.0
    # TGI's server process holds 2161 MiB outside torch's allocator at TP 1 (CUDA context, the kernels of
    # its extensions, cuBLAS), not the 0.74 GiB measured for a bare PyTorch process: a TGI 0.9 start of
    # bigcode/starcoderbase on an A100 40GB (issue #801 of huggingface/text-generation-inference, outside
    # the calibration set) shows 1517 MiB free at the start of serving, beside 29,598 MiB of weights
    # (15.52B parameters) and 367,184 tokens of 20 KiB (7,172 MiB) of KV cache, of the card's 40,448 MiB.
    # That start does not tell its CUDA context from the rest, so a GPU whose context the model puts
    # below the A100's keeps the whole figure; one above it (H100, B200) adds the difference.
    measured_outside_torch_bytes = 2161 * MIB
    measured_context_bytes = cuda_context_bytes("8.0", 108)
    non_torch_bytes = measured_outside_torch_bytes - measured_context_bytes

    def __init__(self, release: Release) -> None:
        self.release = release
        self.cuda_context_inside_fraction = not release.torch_reserved_only

    def set_cuda_context(self, context_bytes: int) -> None:
        outside_torch = self.measured_outside_torch_bytes - min(context_bytes, self.measured_context_bytes)
        if self.release.torch_reserved_only:
            # Nothing outside torch's allocator counts against the budget: it all lies beside the fraction.
            super().set_cuda_context(context_bytes + outside_torch)
            self.non_torch_bytes = 0
        else:
            super().set_cuda_context(context_bytes)
            self.non_torch_bytes = outside_torch

    def default_scheduling(
        self,
        cuda_total_bytes: int,
        gpu: GpuType,
        max_model_len: int,
        arch: ModelArchitecture | None = None,
        tensor_parallel: int = 1,
        fraction: float = 1.0,
    ) -> Scheduling:
        """The warm-up batch of the release's launcher, with the plan's max input tokens (len - 1)."""
        warmup = self.release.warmup
        if warmup is Warmup.FIXED_4096:
            batched = 4096
        elif warmup is Warmup.INPUT_PLUS_50:
            batched = max_model_len - 1 + 50
        else:
            batched = 4096
            cards = dict(self.release.launcher_cards)
            # A GPU known only by its memory may be the fastest card the launcher knows.
            tflops = max(cards.values()) if gpu.name == UNKNOWN_GPU else cards.get(gpu.product.lower())
            if arch is not None and tflops is not None:
                optimal = tflops * 10**12 * tensor_parallel // _launcher_flops_per_token(arch)
                batched = optimal if optimal > 100 else batched
            if arch is not None and arch.max_position_embeddings:
                batched = min(batched, arch.max_position_embeddings)
            allowed = _launcher_vram_tokens(arch, gpu, tensor_parallel, fraction) if arch else None
            batched = min(batched, allowed) if allowed is not None else batched
        return Scheduling(
            max_num_seqs=128, max_num_batched_tokens=batched, block_size_tokens=self._block_size(arch, gpu)
        )

    def _block_size(self, arch: ModelArchitecture | None, gpu: GpuType) -> int:
        """The KV block of the attention the launcher resolves (resolve_attention in launcher/src/main.rs):
        the release's default, or for the families and head dims it moves off FlashInfer, flash decoding
        (256), paged (16) below compute capability 8 where the release says so. An unknown model or GPU
        takes the largest block, which rounds every sequence up the most."""
        release = self.release
        if arch is None:
            moved = bool(release.fallback_families) or release.block_size == 1
        else:
            odd_head = release.block_size == 1 and arch.head_dim not in (64, 128, 256)
            moved = arch.family in release.fallback_families or odd_head
        if not moved:
            return release.block_size
        paged = release.fallback_by_compute_capability and gpu.name != UNKNOWN_GPU
        return 16 if paged and gpu.compute_capability_major < 8 else 256

    def mlp_peaks(self, arch: ModelArchitecture) -> tuple[tuple[int, int], ...]:
        """FlashLlamaLayer.forward keeps each local until it returns: the normed input, the residual sum,
        the attention output, the normed MLP input and the new residual, while FlashLlamaModel.forward's
        loop still holds the previous layer's output and residual; on CUDA FastRMSNorm writes both its
        outputs anew (dropout_add_ln_fwd). LlamaMLP.forward holds gate_up (2I), silu's output and their
        product (I each) as it multiplies, then gate_up, the product and the down projection's output (h).
        Above 8192 hidden the norm adds in place in PyTorch, so two hidden-wide tensors fewer, but the
        post-attention norm's two fp32 copies (4 hidden-wide) beside the layer's four. The same in every
        release: server/text_generation_server/models/custom_modeling/flash_llama_modeling.py@v0.9.4,
        @v1.0.0, @v2.2.0 and @v3.3.5, layers/layernorm.py@v2.2.0 and @v3.3.5 (FastRMSNorm)."""
        if arch.hidden_size > 8192:
            return ((5, 4), (6, 3), (8, 0))
        return ((7, 4), (8, 3))

    def reserved_profile_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """Warm-up asks for prefill logprobs (router/client/src/client.rs@v0.9.4 to
        backends/client/src/v3/client.rs@v3.3.5): the logits of every warm-up token, vocab wide in the
        model's dtype, and log_softmax's output beside them before 2.4; from 3.0 the server drops them
        unless asked to (`logits_copies` 0), so only each request's last token reaches the head. Each is
        larger than any segment the forward pass reserved, and the caching allocator does not merge
        segments, so they add to the forward's peak. With TP the head computes its shard into a tensor of
        its own before gathering (TensorParallelHead.forward in utils/layers.py@v0.9.4,
        layers/tensor_parallel.py@v2.2.0). TGI reads used memory after warm-up, so what the caching
        allocator keeps reserved beyond the forward's live peak counts too (see `_replay_forward`); MoE
        layers are not replayed, and count only the all-reduce outputs a release before 1.4.1 leaves
        recorded on NCCL's stream (two per layer and the embedding's)."""
        element = weights.compute_bytes
        logits = tokens * arch.vocab_size * element * self.release.logits_copies
        if tensor_parallel > 1 and self.release.logits_copies:
            logits += tokens * arch.vocab_size * element // tensor_parallel
        recorded = tensor_parallel > 1 and self.release.allreduce_outputs_reserved
        if arch.is_moe:
            return logits + (2 * arch.num_layers + 1) * tokens * arch.hidden_size * element * recorded
        forward = _replay_forward(arch, tensor_parallel, tokens, element, recorded)
        return logits + forward.reserved_bytes - forward.live_bytes

    def free_memory_rule(
        self, layout: KvLayout, max_model_len: int, max_num_batched_tokens: int
    ) -> FreeMemoryRule:
        """Releases 1.4.1-2.4 keep `free_kept` of the free memory after warm-up and add back KV blocks of
        the warm-up batch: one request per `max_input_tokens` (the plan's length - 1) of the prefill, each
        holding `max_total_tokens - 1` tokens (router/client/src/client.rs@v1.4.1, warmup; FlashCausalLMBatch
        .from_pb@v1.4.1). From 2.1 none are added back when every request finished at prefill: a full one
        asks for one new token, so that is when no last, partial request is left to ask for more."""
        input_tokens = max(max_model_len - 1, 1)
        requests = ceil_div(max_num_batched_tokens, input_tokens)
        all_finished = max_num_batched_tokens % input_tokens == 0
        unless = self.release.added_back is AddedBack.UNLESS_ALL_FINISHED
        added_back = 0 if unless and all_finished else requests
        if self.release.free_kept == 1.0 and added_back == requests:
            return ALL_FREE_MEMORY
        sequence = layout.bytes_per_sequence(input_tokens, max_num_batched_tokens)
        kept = round(self.release.free_kept * 10_000)
        return FreeMemoryRule(kept, requests * sequence, added_back * sequence)

    def usable_bytes(self, cuda_total_bytes: int, fraction: float, tensor_parallel: int = 1) -> int:
        """`fraction x total`, scaled by TGI_WIGGLE_ROOM from 3.0."""
        return int(cuda_total_bytes * fraction * self.release.fraction_wiggle)

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"{FLAGS.model}={launch.model}",
            f"{FLAGS.tensor_parallel}={launch.tensor_parallel}",
            f"{FLAGS.max_model_len}={launch.max_model_len}",
            f"{FLAGS.max_input_tokens}={max(1, launch.max_model_len - 1)}",
            f"{FLAGS.max_num_seqs}={launch.max_num_seqs}",
            f"{FLAGS.memory_fraction}={format_fraction(launch.memory_fraction)}",
            f"{FLAGS.dtype}={TORCH_DTYPE_NAMES[launch.weights.compute_dtype]}",
        ]
        if launch.kv_cache_fp8:
            args.append(f"{FLAGS.kv_cache_dtype}=fp8_e4m3fn")
        quant = launch.weights.quantization
        if quant is not None and quant.method in ("fp8", "gptq", "awq", "bitsandbytes"):
            args.append(f"{FLAGS.quantization}={quant.method}")
        if launch.max_num_batched_tokens is not None:
            args.append(f"{FLAGS.max_num_batched_tokens}={launch.max_num_batched_tokens}")
        return args


def _model(build: EngineBuild, compute_capability_major: int | None) -> EngineModel:
    """The release a build runs, from its stated version or image tag; unstated, the default image's."""
    version = parse_version(build.version)
    assumptions: tuple[str, ...] = ()
    if version is None:
        stated = build.version or ""
        assumed = NEWEST_READ_VERSION if "latest" in stated.lower() else RUNTIME.image.rpartition(":")[2]
        version = parse_version(assumed)
        assert version is not None
        said = f" ({stated!r})" if stated else ""
        assumptions = (f"TGI release not stated{said}: the rules of {assumed} apply",)
    model_label = version_label(version)
    if re.search(r"\.dev\d*\b", build.version or ""):
        version, model_label = development_build(version), f"{model_label}.dev"
    rows = [row for row in RELEASES if row.first <= version]
    model = TgiModel(rows[-1] if rows else FIRST_RELEASE)
    model.release_label = model_label
    model.assumptions = (
        *assumptions,
        *beyond_newest_read("TGI", model.release_label, version, NEWEST_READ_VERSION),
    )
    return model


DEFINITION = EngineDefinition(Engine.TGI, "TGI", RUNTIME, FLAGS, _model, COMMAND_LINE)
