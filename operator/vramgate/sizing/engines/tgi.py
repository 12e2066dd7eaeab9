"""Text Generation Inference: its memory model, its official image, and the flags a plan sets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import UNKNOWN_GPU, GpuType
from vramgate.sizing.engines.base import (
    TORCH_DTYPE_NAMES,
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    Launch,
    OverheadCurve,
    PlanFlags,
    Scheduling,
    format_fraction,
    parse_version,
)
from vramgate.sizing.engines.options import CommandLine, GovernedFlag, OptionSyntax, PlannedFlag
from vramgate.sizing.memory import WeightFormat
from vramgate.sizing.units import MIB

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
        GovernedFlag(("--port", "-p"), "set spec.runtime.port instead"),
        GovernedFlag(("--hostname",), "probes and the Service reach the server on every interface"),
    ),
    planned=(PlannedFlag(("--max-batch-prefill-tokens",), "max_num_batched_tokens"),),
)
RUNTIME = EngineRuntime(
    image="ghcr.io/huggingface/text-generation-inference:3.3.5",
    repositories=("ghcr.io/huggingface/text-generation-inference", "huggingface/text-generation-inference"),
    command=(),
    port=80,
    port_flag="--port",
    host_flag=None,
)


class Warmup(Enum):
    """How TGI's launcher picks `--max-batch-prefill-tokens` when it is not given: the batch warm-up runs."""

    FIXED_4096 = "4096 tokens"
    INPUT_PLUS_50 = "max_input_tokens + 50"
    COMPUTE_OPTIMAL = "the GPUs' fp16 FLOP/s over the model's FLOPs per token (else 4096), capped by "
    "max_position_embeddings and the tokens the launcher's VRAM estimate allows"


@dataclass(frozen=True)
class Release:
    """One row of TGI's release table: from `first` on, until the next row. After warm-up TGI fills
    `max(0, free - (1 - fraction) x total)` with KV blocks, taking `wiggle` of it, or (from 3.0) takes
    the free memory above `(1 - fraction x wiggle) x total`: either way the CUDA context, weights and the
    warm-up's reserved peak count inside the fraction."""

    first: tuple[int, ...]
    changes: str
    source: str
    wiggle: float
    warmup: Warmup

    @property
    def version(self) -> str:
        return ".".join(str(part) for part in self.first)


RELEASES = (
    Release(
        (0, 9, 4),
        "KV blocks fill the free memory above (1 - fraction) x total after warm-up (earlier releases took "
        "--max-batch-total-tokens as given); warm-up prefills 4096 tokens",
        "server/text_generation_server/models/flash_causal_lm.py@v0.9.4, launcher/src/main.rs@v0.9.4",
        1.0,
        Warmup.FIXED_4096,
    ),
    Release(
        (2, 0, 0),
        "5% wiggle room off the free memory; warm-up prefills max_input_tokens + 50",
        "server/text_generation_server/models/flash_causal_lm.py@v2.0.0, launcher/src/main.rs@v2.0.0",
        0.95,
        Warmup.INPUT_PLUS_50,
    ),
    Release(
        (2, 4, 0),
        "TGI_WIGGLE_ROOM defaults to 0.90",
        "server/text_generation_server/models/globals.py@v2.4.0",
        0.90,
        Warmup.INPUT_PLUS_50,
    ),
    Release(
        (3, 0, 0),
        "the wiggle room scales the fraction (free above (1 - fraction x 0.95) x total); the launcher sizes "
        "warm-up from the GPU's FLOP/s",
        "server/text_generation_server/models/flash_causal_lm.py@v3.0.0, "
        "server/text_generation_server/models/globals.py@v3.0.0, launcher/src/main.rs@v3.0.0",
        0.95,
        Warmup.COMPUTE_OPTIMAL,
    ),
    Release(
        (3, 1, 0),
        "TGI_WIGGLE_ROOM defaults to 0.93",
        "server/text_generation_server/models/globals.py@v3.1.0",
        0.93,
        Warmup.COMPUTE_OPTIMAL,
    ),
    Release(
        (3, 3, 0),
        "TGI_WIGGLE_ROOM defaults to 0.90",
        "server/text_generation_server/models/globals.py@v3.3.0",
        0.90,
        Warmup.COMPUTE_OPTIMAL,
    ),
)
# The newest release whose source was read: the last row holds up to it.
NEWEST_READ_VERSION = "3.3.7"
# The launcher's dense fp16 FLOP/s per card (launcher/src/main.rs@v3.3.5, ComputeType::f16_flop); other
# cards get no compute estimate and the 4096-token default.
F16_TFLOPS = {
    "RTX-4090": 82,
    "T4": 65,
    "L4": 121,
    "L40S": 363,
    "A10G": 125,
    "A100-40GB": 312,
    "A100-80GB": 312,
    "A100-80GB-PCIe": 312,
    "H100-80GB": 900,
    "H200": 989,
}
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


class TgiModel(EngineModel):
    """Text Generation Inference: after warm-up prefills its largest batch, KV blocks fill what the
    fraction leaves, less the release's wiggle room. TGI reads used memory from the driver, so its CUDA
    context and the warm-up's peak count inside the fraction; decode CUDA graphs are captured after."""

    engine = Engine.TGI
    sliding_window_paged = False
    cuda_context_inside_fraction = True
    # FlashLlamaMLP.forward holds gate+up (2I), the activation (I) and their product (I) while the layer
    # holds the residual and the normed input (server/.../flash_llama_modeling.py@v3.3.5).
    mlp_peak = (2, 4)

    def __init__(self, release: Release) -> None:
        self.release = release

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
            # A GPU known only by its memory may be the fastest card the launcher knows.
            tflops = max(F16_TFLOPS.values()) if gpu.name == UNKNOWN_GPU else F16_TFLOPS.get(gpu.name)
            if arch is not None and tflops is not None:
                optimal = tflops * 10**12 * tensor_parallel // _launcher_flops_per_token(arch)
                batched = optimal if optimal > 100 else batched
            if arch is not None and arch.max_position_embeddings:
                batched = min(batched, arch.max_position_embeddings)
            allowed = _launcher_vram_tokens(arch, gpu, tensor_parallel, fraction) if arch else None
            batched = min(batched, allowed) if allowed is not None else batched
        return Scheduling(max_num_seqs=128, max_num_batched_tokens=batched, block_size_tokens=16)

    def overhead_curve(
        self,
        arch: ModelArchitecture,
        weights: WeightFormat,
        tensor_parallel: int,
        max_num_batched_tokens: int,
        samples: bool = True,
    ) -> OverheadCurve:
        """Warm-up asks for prefill logprobs (backends/client/src/v3/client.rs@v3.3.5, warmup; the same in
        router/client/src/client.rs@v1.4.0): the logits of every warm-up token, vocab wide in the model's
        dtype, log-softmaxed in place (flash_causal_lm.py@v3.3.5), beside the last hidden states."""
        curve = super().overhead_curve(arch, weights, tensor_parallel, max_num_batched_tokens, samples)
        logits = max_num_batched_tokens * arch.vocab_size * weights.compute_bytes
        return replace(curve, sampler_base_bytes=curve.sampler_base_bytes + logits)

    def usable_bytes(self, cuda_total_bytes: int, fraction: float) -> int:
        """`fraction x wiggle x total`; releases 2.0-2.4 apply the wiggle to what is left after the used
        memory instead, which this counts in full (a few hundred MiB more against the cache)."""
        return int(cuda_total_bytes * fraction * self.release.wiggle)

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
    rows = [row for row in RELEASES if row.first <= version]
    model = TgiModel(rows[-1] if rows else RELEASES[0])
    model.release_label = ".".join(str(part) for part in version)
    model.assumptions = assumptions
    return model


DEFINITION = EngineDefinition(Engine.TGI, "TGI", RUNTIME, FLAGS, _model, COMMAND_LINE)
