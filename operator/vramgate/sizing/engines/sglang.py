"""SGLang: its memory model, its official image, and the flags a plan sets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import GpuType
from vramgate.sizing.engines.base import (
    TORCH_DTYPE_NAMES,
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    Launch,
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
from vramgate.sizing.units import GIB, MIB

FLAGS = PlanFlags(
    model="--model-path",
    tensor_parallel="--tp-size",
    pipeline_parallel="--pp-size",
    max_model_len="--context-length",
    max_input_tokens=None,
    max_num_seqs="--max-running-requests",
    memory_fraction="--mem-fraction-static",
    dtype="--dtype",
    kv_cache_dtype="--kv-cache-dtype",
    quantization="--quantization",
    max_num_batched_tokens="--chunked-prefill-size",
    block_size=None,
)
# Read from sglang/srt/server_args.py (ServerArgs.add_cli_args, prepare_server_args) of v0.5.3: a plain
# argparse parser, so prefixes count and `_` is no `-`. The option lists of v0.5.6, v0.5.9, v0.5.10.post1,
# v0.5.16 and v0.5.23 were read again for options that change what the plan sizes or where it runs.
COMMAND_LINE = CommandLine(
    syntax=OptionSyntax.ARGPARSE,
    source="SGLang v0.5.3: srt/server_args.py",
    governed=(
        GovernedFlag(("--model-path", "--model"), "set spec.model.name or spec.model.source instead"),
        GovernedFlag(("--context-length",), "set spec.workload.maxSequenceLength instead"),
        GovernedFlag(("--mem-fraction-static",), "set spec.gpu.maxMemoryFraction instead"),
        GovernedFlag(("--max-total-tokens",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--max-prefill-tokens",), "set runtime.extraArgs --chunked-prefill-size instead"),
        GovernedFlag(("--page-size",), "the plan sizes token pages of 1"),
        GovernedFlag(
            ("--attention-backend", "--prefill-attention-backend", "--decode-attention-backend"),
            "leave the attention backend to SGLang: a backend sets the KV page size and the workspace "
            "the plan sizes",
        ),
        GovernedFlag(("--kv-cache-dtype",), "set spec.model.kvCacheDtype instead"),
        # Layer offloading (server_args.py@v0.5.10.post1: --offload-*) and ktransformers' CPU experts
        GovernedFlag(
            (
                "--cpu-offload-gb",
                "--offload-mode",
                "--offload-group-size",
                "--offload-num-in-group",
                "--offload-prefetch-step",
                "--kt-weight-path",
                "--kt-num-gpu-experts",
                "--enable-paged-experts",  # experts paged from host memory (v0.5.23)
            ),
            "set spec.gpu instead (the plan keeps every weight on the GPUs)",
        ),
        # The sliding-window pool's share (server_args.py@v0.5.10.post1; --hybrid-kvcache-ratio, its
        # deprecated name), or no separate pool at all
        GovernedFlag(
            (
                "--swa-full-tokens-ratio",
                "--hybrid-kvcache-ratio",
                "--disable-hybrid-swa-memory",
                "--enable-unified-memory",  # one buffer split between the pools at run time (v0.5.23)
            ),
            "leave the sliding-window KV pool to SGLang: the plan sizes it at the default ratio",
        ),
        GovernedFlag(
            (
                "--tensor-parallel-size",
                "--tp-size",
                "--attention-context-parallel-size",
                "--attn-cp-size",
                "--moe-data-parallel-size",
                "--moe-dp-size",
                "--moe-dense-tp-size",
                "--enable-prefill-context-parallel",
                # server_args.py@v0.5.16 and arg_groups/fields/parallel.py@v0.5.23
                "--attn-dp-size",
                "--attention-data-parallel-size",
                "--dcp-size",
                "--decode-context-parallel-size",
                "--enable-prefill-cp",
                "--enable-kv-cache-sharding",
                "--shared-experts-tp-size",
            ),
            "set spec.gpu.count instead",
        ),
        GovernedFlag(("--pipeline-parallel-size", "--pp-size"), "set spec.gpu.count instead"),
        GovernedFlag(("--data-parallel-size", "--dp-size"), "set spec.replicas instead"),
        GovernedFlag(
            (
                "--expert-parallel-size",
                "--ep-size",
                "--ep",
                "--ep-num-redundant-experts",
                "--enable-eplb",
                "--enable-ep-moe",
                "--enable-deepep-moe",
                "--max-ep-size",  # buffers pre-allocated for a larger expert-parallel group (v0.5.23)
            ),
            "set spec.gpu.count instead (redundant experts are weights the plan does not size)",
        ),
        # The GPUs a server takes, counted from an id: the container sees only the ones the plan requested
        GovernedFlag(
            ("--base-gpu-id", "--gpu-id-step"), "leave GPU selection to the GPUs the plan requests (spec.gpu)"
        ),
        GovernedFlag(("--enable-dp-attention",), "set spec.gpu.count instead"),
        GovernedFlag(
            ("--nnodes", "--node-rank", "--dist-init-addr", "--nccl-init-addr"),
            "set spec.gpu.count instead (one pod, one node; a node of rank 1 or more serves no HTTP)",
        ),
        GovernedFlag(
            ("--disaggregation-mode",),
            "serve without it: a prefill or a decode server alone answers no request, and the buffers that "
            "move its KV cache are not planned",
        ),
        GovernedFlag(
            ("--quantization", "--modelopt-quant", "--quantize-and-serve"), "set spec.model.precision instead"
        ),
        GovernedFlag(("--dtype",), "set spec.model.precision instead"),
        # From v0.5.16 the decode phase's names carry -decode (the old ones are deprecated aliases), and
        # --cuda-graph-config (v0.5.23) sets every phase as JSON
        GovernedFlag(
            (
                "--cuda-graph-max-bs",
                "--cuda-graph-bs",
                "--cuda-graph-max-bs-decode",
                "--cuda-graph-bs-decode",
                "--cuda-graph-backend-decode",
                "--cuda-graph-config",
            ),
            "set spec.workload.concurrency instead",
        ),
        # Memory outside the static fraction that the plan's reserve does not hold: torch.compile's graphs,
        # and piecewise CUDA graphs where a release leaves them off or at other token counts
        GovernedFlag(
            (
                "--enable-torch-compile",
                "--torch-compile-max-bs",
                "--enable-piecewise-cuda-graph",
                "--enforce-piecewise-cuda-graph",
                "--piecewise-cuda-graph-max-tokens",
                "--piecewise-cuda-graph-tokens",
                # the prefill phase's names from v0.5.16 (the piecewise ones are deprecated aliases)
                "--cuda-graph-backend-prefill",
                "--enable-breakable-cuda-graph",
                "--cuda-graph-max-bs-prefill",
                "--cuda-graph-bs-prefill",
                "--cuda-graph-max-seq-len-prefill",
                "--cuda-graph-prefill-max-context",
                "--context-bucket",
            ),
            "leave compilation and the piecewise CUDA graphs at their defaults (the plan's reserve holds "
            "those); --disable-cuda-graph and --disable-piecewise-cuda-graph only take memory away",
        ),
        # server_args.py@v0.5.18 (_handle_mm_feature_transport): a GPU transport's pool, and the flag
        # that selected it before, come out of the KV budget (mem_cache/kv_cache_configurator.py@v0.5.18)
        GovernedFlag(
            ("--mm-feature-transport", "--keep-mm-feature-on-device"),
            "leave multimodal features on SGLang's default CPU transport: a GPU transport's pool "
            "(SGLANG_MM_FEATURE_CACHE_MB, 1 GiB) comes out of the KV cache the plan sizes",
        ),
        GovernedFlag(
            ("--json-model-override-args",),
            "set spec.model.architecture instead (the plan sizes the shape of the model's own config.json)",
        ),
        GovernedFlag(("--help", "-h"), EXITS),
        GovernedFlag(("--enable-lora", "--lora-paths", "--max-loras-per-batch"), LORA),
        GovernedFlag(("--speculative-algorithm", "--speculative-draft-model-path"), SPECULATIVE),
        GovernedFlag(("--port",), "set spec.runtime.port instead"),
        GovernedFlag(("--host",), "probes and the Service reach the server on every interface"),
        GovernedFlag(
            ("--config",), "set the spec's fields instead (a config file would set flags the plan owns)"
        ),
    ),
    planned=(
        PlannedFlag(("--chunked-prefill-size",), "max_num_batched_tokens"),
        PlannedFlag(("--max-running-requests",), "max_num_seqs"),
    ),
    # SGLANG_CI_SMALL_KV_SIZE: srt/model_executor/model_runner.py@v0.5.3 (init_memory_pool), where it
    # replaces the profiled token count.
    governed_variables=(
        ("SGLANG_CI_SMALL_KV_SIZE", "sets the KV cache's token count, which the plan sizes"),
        # srt/managers/scheduler.py@v0.5.3 (init_embedding_cache): encoder outputs kept on the GPU.
        (
            "SGLANG_VLM_CACHE_SIZE_MB",
            "sizes the cache of image embeddings kept on the GPU beside the KV cache (100 MiB by default)",
        ),
        # srt/environ.py@v0.5.18: the GPU feature-transport pool, and the legacy switch that selects it
        (
            "SGLANG_MM_FEATURE_CACHE_MB",
            "sizes the multimodal feature pool a GPU transport takes out of the KV cache",
        ),
        (
            "SGLANG_USE_CUDA_IPC_TRANSPORT",
            "selects the GPU feature transport, whose pool comes out of the KV cache",
        ),
        # srt/environ.py@v0.5.23 (off by default): the pool sized after the CUDA graph capture
        (
            "SGLANG_ENABLE_POST_CAPTURE_KV_SIZING",
            "sizes the KV cache after the CUDA graph capture, where the plan sizes it before",
        ),
    ),
)
# SGLang listens on 127.0.0.1 unless told otherwise.
RUNTIME = EngineRuntime(
    image="lmsysorg/sglang:v0.5.3-cu129",
    repositories=("lmsysorg/sglang",),
    command=("python3", "-m", "sglang.launch_server"),
    port=30000,
    port_flag="--port",
    host_flag="--host",
)


class FractionRule(Enum):
    """How a release picks `--mem-fraction-static` when the command line does not set it."""

    BY_PARALLEL = "by_parallel"  # a fraction per tensor (x pipeline) parallel size
    BY_PARALLEL_UP_TO_80GIB = "by_parallel_up_to_80gib"  # larger GPUs keep 13 GiB
    BY_PARALLEL_LARGE_GPU_HEADROOM = "by_parallel_large_gpu_headroom"  # above 96 GiB: 48 GiB x (1 - f) more
    RESERVED_BY_MEMORY = "reserved_by_memory"  # a reserve per GPU memory band and parallel size
    RESERVED_BY_BATCH = "reserved_by_batch"  # a reserve from the chunked prefill and CUDA graph batch


@dataclass(frozen=True)
class SglangRelease(ReleaseRow):
    """What one SGLang release defaults to when the command line leaves it out. GPU memory is nvidia-smi's
    total in MiB (srt/utils.py get_nvgpu_memory_capacity), as SGLang reads it."""

    fraction_rule: FractionRule
    # (least parallel size, fraction), first match; 0.88 below the smallest
    parallel_fractions: tuple[tuple[int, float], ...]
    parallel_counts_pipeline: bool  # the size is tp x pp, not tp alone
    fraction_above_180gb: float | None  # one fraction for every GPU above 180,000 MiB
    # (below MiB, chunked prefill tokens), first match; the last band holds every larger GPU
    chunked_prefill: tuple[tuple[int, int], ...]
    # (below MiB, CUDA graph batch below TP 4, at TP 4 and more), as chunked_prefill
    cuda_graph_max_bs: tuple[tuple[int, int, int], ...]
    piecewise_graph_reserve: bool  # piecewise CUDA graphs on by default: 8 MiB per captured size
    # Model types whose sliding-window layers get a pool of their own, SWA_FULL_TOKENS_RATIO x the full
    # layers' tokens, unless the GPU's compute capability major is `swa_pool_off_on`
    swa_pool_model_types: frozenset[str]
    swa_pool_off_on: int | None
    rotary_table_fp32: bool  # get_rope's cos/sin tables stay fp32 on CUDA (else the compute dtype)
    # A multimodal checkpoint's default fraction shrinks, by a rule of its vision encoder's shape that is not
    # modelled: such a start has no default here
    multimodal_fraction_scaled: bool
    # The default CUDA graph batch stops at --max-running-requests where that is smaller
    graph_batch_capped_by_running: bool
    # Taken out of the KV budget for a multimodal checkpoint: its image-embedding cache, allocated after
    # the pool is sized (SGLANG_VLM_CACHE_SIZE_MB, which the operator does not let a pod set)
    multimodal_kv_reserve_bytes: int


_NO_LIMIT = 1 << 40
_FP32_BYTES = 4
_GEMMA_TYPES = frozenset({"gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text"})
# --swa-full-tokens-ratio's default, every release that has it (server_args.py@v0.4.9.post3 to @v0.5.10)
SWA_FULL_TOKENS_RATIO = 0.8


def _table() -> ReleaseTable[SglangRelease]:
    table = ReleaseTable(SglangRelease)
    table.add(
        (0, 3, 0),
        "fraction by tensor parallel size: 0.88, 0.87 from 2, 0.85 from 4, 0.83 from 8, 0.79 from 16; "
        "chunked prefill 8192",
        "python/sglang/srt/server_args.py@v0.3.0 (__post_init__)",
        fraction_rule=FractionRule.BY_PARALLEL,
        parallel_fractions=((16, 0.79), (8, 0.83), (4, 0.85), (2, 0.87)),
        parallel_counts_pipeline=False,
        fraction_above_180gb=None,
        chunked_prefill=((_NO_LIMIT, 8192),),
        cuda_graph_max_bs=((_NO_LIMIT, 160, 160),),
        piecewise_graph_reserve=False,
        swa_pool_model_types=frozenset(),
        swa_pool_off_on=None,
        rotary_table_fp32=False,
        multimodal_fraction_scaled=False,
        graph_batch_capped_by_running=False,
        multimodal_kv_reserve_bytes=0,
    )
    table.add(
        (0, 3, 6),
        "0.82 from TP 8; chunked prefill 2048 below 25,000 MiB",
        "python/sglang/srt/server_args.py@v0.3.6 (__post_init__)",
        parallel_fractions=((16, 0.79), (8, 0.82), (4, 0.85), (2, 0.87)),
        chunked_prefill=((25_000, 2048), (_NO_LIMIT, 8192)),
    )
    table.add(
        (0, 4, 0),
        "0.81 from TP 8",
        "python/sglang/srt/server_args.py@v0.4.0 (__post_init__)",
        parallel_fractions=((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)),
    )
    table.add(
        (0, 4, 3),
        "get_rope's cos/sin tables stay fp32 on CUDA",
        "python/sglang/srt/layers/rotary_embedding.py@v0.4.3 (RotaryEmbedding.__init__: 'cache needs to "
        "be in FP32 for numerical stability'); the same in rotary_embedding/base.py@v0.5.23",
        rotary_table_fp32=True,
    )
    table.add(
        (0, 4, 6),
        "GPUs above 81,920 MiB keep 13 GiB whatever the TP",
        "python/sglang/srt/server_args.py@v0.4.6 (__post_init__)",
        fraction_rule=FractionRule.BY_PARALLEL_UP_TO_80GIB,
    )
    table.add(
        (0, 4, 6, 2),
        "the size counts pipeline stages; above 81,920 MiB 0.88, then above 96 GiB min(f + 48 GiB x (1 - f) "
        "/ memory, 1 - 18 GiB / memory)",
        "python/sglang/srt/server_args.py@v0.4.6.post2 (__post_init__)",
        fraction_rule=FractionRule.BY_PARALLEL_LARGE_GPU_HEADROOM,
        parallel_counts_pipeline=True,
    )
    table.add(
        (0, 4, 7),
        "0.79 above 180,000 MiB",
        "python/sglang/srt/server_args.py@v0.4.7 (__post_init__)",
        fraction_above_180gb=0.79,
    )
    table.add(
        (0, 4, 7, 1),
        "1 - reserve / memory, the reserve by GPU memory: 2.8 GiB + 0.1 GiB per GPU below 35 GiB, 9.5 GiB + "
        "0.5 GiB per GPU below 90 GiB, 12 GiB + 0.5 GiB per GPU below 160 GiB, 32 GiB above; chunked "
        "prefill 2048 below 35 GiB, 8192 below 160 GiB, 16384 above",
        "python/sglang/srt/server_args.py@v0.4.7.post1 (__post_init__)",
        fraction_rule=FractionRule.RESERVED_BY_MEMORY,
        fraction_above_180gb=None,
        chunked_prefill=((35 * 1024, 2048), (160 * 1024, 8192), (_NO_LIMIT, 16384)),
    )
    table.add(
        (0, 4, 9),
        "a multimodal checkpoint's default fraction x 0.90; from 0.4.9.post3 x 0.95 x a factor of its "
        "vision encoder's layers and width",
        "python/sglang/srt/server_args.py@v0.4.9 (__post_init__: is_multimodal) and @v0.4.9.post3 "
        "(adjust_mem_fraction_for_vlm); arg_groups/memory_hook.py@v0.5.23 keeps it",
        multimodal_fraction_scaled=True,
    )
    table.add(
        (0, 4, 9, 3),
        "sliding-window layers of Gemma-2, Gemma-3 and Gemma-3n get their own pool (hybrid SWA memory)",
        "python/sglang/srt/model_executor/model_runner.py@v0.4.9.post3 (set_num_token_hybrid; "
        "models/gemma2.py, gemma3_causal.py get_attention_sliding_window_size)",
        swa_pool_model_types=_GEMMA_TYPES,
    )
    table.add(
        (0, 4, 10, 2),
        "Gemma-2 back to one pool",
        "python/sglang/srt/server_args.py@v0.4.10.post2 (check_server_args: Gemma2ForCausalLM)",
        swa_pool_model_types=_GEMMA_TYPES - {"gemma2"},
    )
    table.add(
        (0, 5, 0),
        "every Gemma back to one pool (GPT-OSS keeps one too)",
        "python/sglang/srt/server_args.py@v0.5.0rc0 (_handle_model_specific_adjustments)",
        swa_pool_model_types=frozenset(),
    )
    table.add(
        (0, 5, 3),
        "1 - reserve / memory, the reserve 512 MiB + 1.5 MiB per chunked prefill token (at least 2048) + "
        "2 MiB per CUDA graph batch + 128 MiB per GPU, at least 10 GiB above 60 GiB; chunked prefill and "
        "graph batch by GPU memory and TP",
        "python/sglang/srt/server_args.py@v0.5.3 (_handle_gpu_memory_settings)",
        fraction_rule=FractionRule.RESERVED_BY_BATCH,
        chunked_prefill=(
            (35 * 1024, 2048),
            (60 * 1024, 4096),
            (160 * 1024, 8192),
            (_NO_LIMIT, 16384),
        ),
        cuda_graph_max_bs=(
            (20 * 1024, 8, 8),
            (35 * 1024, 16, 80),
            (60 * 1024, 32, 160),
            (160 * 1024, 256, 512),
            (_NO_LIMIT, 512, 512),
        ),
    )
    table.add(
        (0, 5, 6),
        "CUDA graph batch 24 below 35 GiB and TP 4",
        "python/sglang/srt/server_args.py@v0.5.6 (_handle_gpu_memory_settings)",
        cuda_graph_max_bs=(
            (20 * 1024, 8, 8),
            (35 * 1024, 24, 80),
            (60 * 1024, 32, 160),
            (160 * 1024, 256, 512),
            (_NO_LIMIT, 512, 512),
        ),
    )
    table.add(
        (0, 5, 8),
        "GPT-OSS's sliding-window layers get their own pool, except with the trtllm_mha backend, the "
        "default on compute capability 10",
        "python/sglang/srt/server_args.py@v0.5.8 (_handle_model_specific_adjustments: GptOssForCausalLM)",
        swa_pool_model_types=frozenset({"gpt_oss"}),
        swa_pool_off_on=10,
    )
    table.add(
        (0, 5, 10),
        "piecewise CUDA graphs on by default: 8 MiB more reserve per captured size up to the chunked "
        "prefill (1.5 GiB with MLA)",
        "python/sglang/srt/server_args.py@v0.5.10 (_handle_gpu_memory_settings, "
        "_generate_piecewise_cuda_graph_tokens)",
        piecewise_graph_reserve=True,
        swa_pool_off_on=None,
    )
    table.add(
        (0, 5, 18),
        "a multimodal checkpoint's image-embedding cache, 100 MiB, comes out of the KV budget",
        "python/sglang/srt/mem_cache/kv_cache_configurator.py@v0.5.18 (_profile_available_bytes, "
        "mm_runtime_reservation_gb; SGLANG_VLM_CACHE_SIZE_MB in srt/environ.py; the GPU feature "
        "transports, which reserve 1 GiB more, are opt-in on one node: server_args.py, "
        "_handle_mm_feature_transport)",
        multimodal_kv_reserve_bytes=100 * MIB,
    )
    table.add(
        (0, 5, 20),
        "from 20 GiB to 35 GiB: chunked prefill 4096, CUDA graph batch 48 below TP 4 and 160 at TP 4",
        "python/sglang/srt/arg_groups/memory_hook.py@v0.5.20 (handle_gpu_memory_settings)",
        chunked_prefill=(
            (20 * 1024, 2048),
            (60 * 1024, 4096),
            (160 * 1024, 8192),
            (_NO_LIMIT, 16384),
        ),
        cuda_graph_max_bs=(
            (20 * 1024, 8, 8),
            (35 * 1024, 48, 160),
            (60 * 1024, 32, 160),
            (160 * 1024, 256, 512),
            (_NO_LIMIT, 512, 512),
        ),
    )
    table.add(
        (0, 5, 22),
        "the default CUDA graph batch stops at --max-running-requests",
        "python/sglang/srt/arg_groups/memory_hook.py@v0.5.22 (handle_gpu_memory_settings: "
        "decode_max_bs_is_default)",
        graph_batch_capped_by_running=True,
    )
    return table


RELEASES = _table().rows
# The newest release whose defaults and KV budget were read (every release from 0.5.10 to it: server_args.py,
# then srt/arg_groups/memory_hook.py from 0.5.19, and the KV budget in
# model_executor/model_runner_kv_cache_mixin.py, then mem_cache/kv_cache_configurator.py from 0.5.16); later
# ones are planned with its rules and say so.
NEWEST_READ_VERSION = "0.5.23"


def _band(bands: tuple[tuple[int, ...], ...], memory_mib: int) -> tuple[int, ...]:
    return next(band for band in bands if memory_mib < band[0])


def _piecewise_capture_sizes(max_tokens: int) -> int:
    """How many token counts 0.5.10 captures piecewise graphs for, up to `max_tokens`
    (server_args.py@v0.5.10, _generate_piecewise_cuda_graph_tokens)."""
    sizes = [
        *range(4, 33, 4),
        *range(48, 257, 16),
        *range(288, 513, 32),
        *range(576, 1025, 64),
        *range(1280, 4097, 256),
        *range(4608, max_tokens + 1, 512),
    ]
    return sum(1 for size in sizes if size <= max_tokens)


def default_chunked_prefill(release: SglangRelease, memory_mib: int) -> int:
    """`--chunked-prefill-size` when the command line leaves it out."""
    return _band(release.chunked_prefill, memory_mib)[1]


def default_memory_fraction(
    release: SglangRelease,
    memory_mib: int,
    tensor_parallel: int,
    pipeline_parallel: int,
    mla: bool,
    chunked_prefill: int | None = None,
    max_running_requests: int | None = None,
) -> float:
    """`--mem-fraction-static` when the command line leaves it out, for a text model without speculative
    decoding or DP attention (each of which the engine reserves more for); `chunked_prefill` and
    `max_running_requests` are the command line's `--chunked-prefill-size` and
    `--max-running-requests`, when it sets them."""
    rule = release.fraction_rule
    if rule is FractionRule.RESERVED_BY_MEMORY:
        parallel = tensor_parallel * pipeline_parallel
        if memory_mib < 35 * 1024:
            reserved = (2.8 + parallel / 10) * 1024
        elif memory_mib < 90 * 1024:
            reserved = (9.5 + parallel / 2) * 1024
        elif memory_mib < 160 * 1024:
            reserved = (12 + parallel / 2) * 1024
        else:
            reserved = 32 * 1024
        return round((memory_mib - reserved) / memory_mib, 3)
    if rule is FractionRule.RESERVED_BY_BATCH:
        chunked = chunked_prefill or default_chunked_prefill(release, memory_mib)
        graph_bs = _band(release.cuda_graph_max_bs, memory_mib)[1 if tensor_parallel < 4 else 2]
        if release.graph_batch_capped_by_running and max_running_requests is not None:
            graph_bs = min(graph_bs, max_running_requests)
        reserved = (
            512 + max(chunked, 2048) * 1.5 + graph_bs * 2 + tensor_parallel * pipeline_parallel / 8 * 1024
        )
        if release.piecewise_graph_reserve:
            reserved += 1.5 * 1024 if mla else _piecewise_capture_sizes(chunked) * 8
        if memory_mib > 60 * 1024:
            reserved = max(reserved, 10 * 1024)
        return round((memory_mib - reserved) / memory_mib, 3)
    parallel = tensor_parallel * (pipeline_parallel if release.parallel_counts_pipeline else 1)
    by_parallel = next((f for least, f in release.parallel_fractions if parallel >= least), 0.88)
    if rule is FractionRule.BY_PARALLEL:
        return by_parallel
    if rule is FractionRule.BY_PARALLEL_UP_TO_80GIB:
        return by_parallel if memory_mib <= 81920 else (memory_mib - 13 * 1024) / memory_mib
    fraction = by_parallel if memory_mib <= 81920 else 0.88
    if release.fraction_above_180gb is not None and memory_mib > 180_000:
        return release.fraction_above_180gb
    if memory_mib > 96 * 1024:
        fraction = min(
            fraction + 48 * 1024 * (1 - fraction) / memory_mib, (memory_mib - 18 * 1024) / memory_mib
        )
    return fraction


_POST = re.compile(r"\.post(\d+)")


def release_version(version: str | None) -> tuple[int, ...] | None:
    """(0, 4, 6, 2) from "v0.4.6.post2", so post releases order after their release; None as
    parse_version."""
    number = parse_version(version)
    post = _POST.search(version or "")
    return (*number, int(post[1])) if number is not None and post else number


class SglangModel(EngineModel):
    """SGLang: `--mem-fraction-static` x free memory at start holds weights and the KV pool.

    The pool is the free memory after loading less (1 - fraction) x the free memory measured once the CUDA
    context and the distributed groups are up (sglang/srt/model_executor/model_runner.py@v0.4.3.post4,
    profile_max_num_token and init_torch_distributed): no forward pass is profiled, so activations and
    CUDA graphs (`--cuda-graph-max-bs`) use what the fraction leaves and never shrink the pool. The
    tensor-parallel communicators (NCCL, custom all-reduce) are created in init_torch_distributed before
    that measure, so their buffers shrink the base the fraction applies to; every release to 0.5.23 keeps
    this order (srt/distributed/bootstrap.py@v0.5.23, measure_pre_model_load_memory: "Call after parallel
    initialization and before allocating model weights").
    Calibrated on R32 (RTX 3090): 0.21 GiB beyond the weights is taken before the pool, 64 MiB of it the
    model's fp32 rotary table (`loaded_buffer_bytes`); the pool is token-granular (page size 1).
    """

    engine = Engine.SGLANG
    default_block_size = 1
    release: SglangRelease = RELEASES[-1]
    compute_capability_major: int | None = None
    non_torch_bytes = round(0.21 * GIB) - 64 * MIB
    activation_inside_fraction = False
    sliding_window_paged = False
    tensor_parallel_buffers_in_baseline = True

    def usable_bytes(self, cuda_total_bytes: int, fraction: float, tensor_parallel: int = 1) -> int:
        baseline = (
            cuda_total_bytes - self.cuda_context_bytes - self.tensor_parallel_buffer_bytes(tensor_parallel)
        )
        return int(baseline * fraction)

    def default_scheduling(
        self,
        cuda_total_bytes: int,
        gpu: GpuType,
        max_model_len: int,
        arch: ModelArchitecture | None = None,
        tensor_parallel: int = 1,
        fraction: float = 1.0,
    ) -> Scheduling:
        chunked = default_chunked_prefill(self.release, gpu.memory_mib)
        return Scheduling(max_num_seqs=256, max_num_batched_tokens=chunked, block_size_tokens=1)

    def default_memory_fraction(
        self,
        gpu: GpuType,
        tensor_parallel: int,
        pipeline_parallel: int,
        arch: ModelArchitecture,
        max_num_batched_tokens: int | None = None,
        max_num_seqs: int | None = None,
    ) -> float | None:
        """The release's `--mem-fraction-static` on `gpu` when the command line leaves it out (None for a
        multimodal checkpoint where the release scales it by a rule not modelled)."""
        if arch.is_multimodal and self.release.multimodal_fraction_scaled:
            return None
        return default_memory_fraction(
            self.release,
            gpu.memory_mib,
            tensor_parallel,
            pipeline_parallel,
            arch.is_mla,
            max_num_batched_tokens,
            max_num_seqs,
        )

    def kv_budget_reserve_bytes(self, arch: ModelArchitecture) -> int:
        """A multimodal checkpoint's image-embedding cache, from the releases that size the pool around it."""
        return self.release.multimodal_kv_reserve_bytes if arch.is_multimodal else 0

    def loaded_buffer_bytes(self, arch: ModelArchitecture, weights: WeightFormat) -> int:
        """get_rope's cos/sin tables, built on the GPU while the model loads, one per distinct rope
        configuration (get_rope caches them by their arguments), a row of rotary_dim per position."""
        element = _FP32_BYTES if self.release.rotary_table_fp32 else weights.compute_bytes
        return sum(arch.rotary_table_positions) * arch.rotary_dim * element

    def separate_swa_pool(self, arch: ModelArchitecture) -> bool:
        """Whether the release gives `arch`'s sliding-window layers a pool of their own."""
        off_on = self.release.swa_pool_off_on
        return (
            arch.num_sliding_window_layers > 0
            and arch.family in self.release.swa_pool_model_types
            and (off_on is None or self.compute_capability_major != off_on)
        )

    def reported_kv_tokens(
        self,
        layout: KvLayout,
        kv_budget_bytes: int,
        max_model_len: int,
        max_batched_tokens: int,
        arch: ModelArchitecture | None = None,
    ) -> int:
        """The full layers' tokens: with a pool of their own, sliding-window layers hold
        SWA_FULL_TOKENS_RATIO as many, and the full layers' count F solves F x (full + ratio x sliding
        layers) = the tokens all layers would hold (model_runner.py@v0.5.3 set_num_token_hybrid,
        model_runner_kv_cache_mixin.py@v0.5.10: the same for equal per-layer sizes)."""
        tokens = layout.capacity_tokens(kv_budget_bytes)
        if arch is None or not self.separate_swa_pool(arch):
            return tokens
        sliding = round(arch.num_sliding_window_layers * layout.num_layers / arch.num_layers)
        full = layout.num_layers - sliding
        return int(tokens * layout.num_layers / (SWA_FULL_TOKENS_RATIO * sliding + full))

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"{FLAGS.model}={launch.model}",
            f"{FLAGS.tensor_parallel}={launch.tensor_parallel}",
            f"{FLAGS.max_model_len}={launch.max_model_len}",
            f"{FLAGS.max_num_seqs}={launch.max_num_seqs}",
            f"{FLAGS.memory_fraction}={format_fraction(launch.memory_fraction)}",
            f"{FLAGS.dtype}={TORCH_DTYPE_NAMES[launch.weights.compute_dtype]}",
        ]
        if launch.pipeline_parallel > 1:
            args.append(f"{FLAGS.pipeline_parallel}={launch.pipeline_parallel}")
        if launch.kv_cache_fp8:
            args.append(f"{FLAGS.kv_cache_dtype}=fp8_e4m3")
        quant = launch.weights.quantization
        if quant is not None and quant.method == "fp8":
            args.append(f"{FLAGS.quantization}=fp8")
        if launch.max_num_batched_tokens is not None:
            args.append(f"{FLAGS.max_num_batched_tokens}={launch.max_num_batched_tokens}")
        return args


def _model(build: EngineBuild, compute_capability_major: int | None) -> EngineModel:
    """The release a build runs, from its stated version or image tag; unstated, the default image's."""
    version = release_version(build.version)
    assumptions: list[str] = []
    if version is None:
        stated = build.version or ""
        assumed = NEWEST_READ_VERSION if "latest" in stated.lower() else RUNTIME.image.rpartition(":")[2]
        version = release_version(assumed) or RELEASES[-1].first
        said = f" ({stated!r})" if stated else ""
        assumptions.append(f"SGLang release not stated{said}: the defaults of {assumed} apply")
    assumptions.extend(beyond_newest_read("SGLang", version_label(version), version, NEWEST_READ_VERSION))
    model = SglangModel()
    model.compute_capability_major = compute_capability_major
    model.release = next((row for row in reversed(RELEASES) if row.first <= version), RELEASES[0])
    model.release_label = version_label(version)
    model.assumptions = tuple(assumptions)
    return model


DEFINITION = EngineDefinition(Engine.SGLANG, "SGLang", RUNTIME, FLAGS, _model, COMMAND_LINE)
