"""vLLM: its memory model by release, its official image, and the flags a plan sets."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from enum import Enum

from vramgate.sizing.allocator import CachingAllocator, ForwardReplay, held_block_bytes, replay_layers
from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import UNKNOWN_GPU, GpuType
from vramgate.sizing.engines.base import (
    NO_ENCODER_PROFILE,
    NO_PROGRAM_BUFFER,
    TORCH_DTYPE_NAMES,
    EncoderProfile,
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    Launch,
    PlanFlags,
    ProgramBuffer,
    ReleaseRow,
    ReleaseTable,
    Scheduling,
    WarmupReserve,
    beyond_newest_read,
    format_fraction,
    parse_version,
    version_label,
)
from vramgate.sizing.engines.options import (
    EXITS,
    KV_CONNECTOR,
    LORA,
    SPECULATIVE,
    CommandLine,
    GovernedFlag,
    OptionSyntax,
    PlannedFlag,
)
from vramgate.sizing.memory import (
    ExpertPadding,
    KvLayout,
    MxSwizzle,
    PipelineStage,
    WeightFormat,
    weight_tensor_sizes,
)
from vramgate.sizing.units import GIB, MIB, ceil_div

FLAGS = PlanFlags(
    model="--model",
    tensor_parallel="--tensor-parallel-size",
    pipeline_parallel="--pipeline-parallel-size",
    max_model_len="--max-model-len",
    max_input_tokens=None,
    max_num_seqs="--max-num-seqs",
    memory_fraction="--gpu-memory-utilization",
    dtype="--dtype",
    kv_cache_dtype="--kv-cache-dtype",
    quantization="--quantization",
    max_num_batched_tokens="--max-num-batched-tokens",
    block_size="--block-size",
)
# Read from vllm/engine/arg_utils.py (EngineArgs.add_cli_args), vllm/entrypoints/openai/cli_args.py and
# FlexibleArgumentParser (vllm/utils/__init__.py) of v0.11.0; short forms are those it defines (its -O3
# and -O.key=value are --compilation-config). The option lists of every later release through v0.34.0
# were read again (EngineArgs.add_cli_args, by destination): a later alias of a governed flag, and a later
# option that changes what the plan sizes or where the engine runs, is governed with it.
COMMAND_LINE = CommandLine(
    syntax=OptionSyntax.ARGPARSE,
    source="vLLM v0.11.0: engine/arg_utils.py, entrypoints/openai/cli_args.py, utils FlexibleArgumentParser",
    underscores_are_dashes=True,
    governed=(
        GovernedFlag(("--model",), "set spec.model.name or spec.model.source instead"),
        GovernedFlag(("--max-model-len",), "set spec.workload.maxSequenceLength instead"),
        # --device-memory-utilization: the same destination (engine/arg_utils.py@v0.31.0)
        GovernedFlag(
            ("--gpu-memory-utilization", "--device-memory-utilization"),
            "set spec.gpu.maxMemoryFraction instead",
        ),
        GovernedFlag(("--kv-cache-memory-bytes",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--num-gpu-blocks-override",), "set spec.workload.concurrency instead"),
        # --kv-cache-dtype-skip-layers (engine/arg_utils.py@v0.19.1) keeps the named layers' cache
        # unquantized: more bytes per token than the plan's fp8 cache
        GovernedFlag(
            ("--kv-cache-dtype", "--kv-cache-dtype-skip-layers"), "set spec.model.kvCacheDtype instead"
        ),
        # The weight-offloading group (engine/arg_utils.py@v0.17.1, config/offload.py): UVA and prefetch
        # offloading
        GovernedFlag(
            (
                "--cpu-offload-gb",
                "--cpu-offload-params",
                "--offload-backend",
                "--offload-params",
                "--offload-group-size",
                "--offload-num-in-group",
                "--offload-prefetch-step",
            ),
            "set spec.gpu instead (the plan keeps every weight on the GPUs)",
        ),
        GovernedFlag(
            ("--swap-space",), "set spec.workload instead (the plan sizes the KV cache on the GPUs)"
        ),
        GovernedFlag(("--tensor-parallel-size", "-tp"), "set spec.gpu.count instead"),
        GovernedFlag(("--pipeline-parallel-size", "-pp"), "set spec.gpu.count instead"),
        GovernedFlag(
            ("--data-parallel-size", "-dp", "--data-parallel-size-local", "-dpl"), "set spec.replicas instead"
        ),
        GovernedFlag(
            ("--decode-context-parallel-size", "-dcp", "--prefill-context-parallel-size", "-pcp"),
            "set spec.gpu.count instead",
        ),
        # -ep (engine/arg_utils.py@v0.14.1), elastic expert parallelism (@v0.17.1)
        GovernedFlag(
            (
                "--enable-expert-parallel",
                "-ep",
                "--enable-eplb",
                "--num-redundant-experts",
                "--eplb-config",
                "--enable-elastic-ep",
                "--elastic-ep-max-dp-size",
            ),
            "set spec.gpu.count instead (redundant experts are weights the plan does not size)",
        ),
        # The multiprocessing executor's own multi-node start (engine/arg_utils.py@v0.11.2): a server that
        # waits for nodes the Deployment never starts
        GovernedFlag(
            ("--nnodes", "-n", "--node-rank", "-r", "--master-addr", "--master-port"),
            "set spec.gpu.count instead (the operator places a model that needs several nodes itself)",
        ),
        # --device-ids (engine/arg_utils.py@v0.24.0) picks among the GPUs the container sees, which the device
        # plugin sets to the ones the plan requested: a subset leaves the tensor-parallel ranks without GPUs
        GovernedFlag(("--device-ids",), "leave device selection to the GPUs the plan requests (spec.gpu)"),
        GovernedFlag(("--quantization", "-q", "--quantization-config"), "set spec.model.precision instead"),
        GovernedFlag(("--dtype",), "set spec.model.precision instead"),
        GovernedFlag(("--port",), "set spec.runtime.port instead"),
        GovernedFlag(("--host",), "probes and the Service reach the server on every interface"),
        GovernedFlag(("--uds",), "set spec.runtime.port instead (probes and the Service need a TCP port)"),
        GovernedFlag(
            ("--headless",),
            "the server would run its engine without the HTTP server that the probes and the Service reach; "
            "set spec.replicas for more engines instead",
        ),
        GovernedFlag(
            ("--ssl-keyfile", "--ssl-certfile"),
            "the probes speak plain HTTP to the server, so TLS on it would fail them and restart the pod for "
            "ever; terminate TLS in front of the Service instead",
        ),
        GovernedFlag(
            ("--config",), "set the spec's fields instead (a config file would set flags the plan owns)"
        ),
        GovernedFlag(("--enable-lora",), LORA),
        # -sc (engine/arg_utils.py@v0.19.1); the --spec-* shorthands (@v0.22.1)
        GovernedFlag(
            ("--speculative-config", "-sc", "--spec-method", "--spec-model", "--spec-tokens"), SPECULATIVE
        ),
        # --kv-offloading-size (engine/arg_utils.py@v0.11.2) sets up an offloading KV connector
        GovernedFlag(
            ("--kv-transfer-config", "--kv-offloading-size", "--kv-offloading-backend"), KV_CONNECTOR
        ),
        # The CUDA graphs' capture sizes: the plan bounds vLLM's graph estimate for the default ones
        # (scheduler's --cuda-graph-sizes in v0.11.0; the compilation group's flags in
        # engine/arg_utils.py@v0.20.0).
        GovernedFlag(
            ("--cuda-graph-sizes", "--cudagraph-capture-sizes", "--max-cudagraph-capture-size"),
            "leave the CUDA graph capture sizes at their defaults (the plan sizes the graphs for them), "
            "or set max_num_seqs through runtime.extraArgs --max-num-seqs",
        ),
        # -cc (engine/arg_utils.py@v0.12.0) is --compilation-config; --optimization-level (@v0.12.0) picks a
        # preset of it, and -O<n> is that level from v0.13.0 (utils/argparse_utils.py@v0.13.0)
        GovernedFlag(
            ("--compilation-config", "-O", "-cc", "--optimization-level"),
            "leave the compilation config at its defaults: it sets the CUDA graphs and their capture sizes, "
            "which the plan sizes (--enforce-eager turns the graphs off)",
        ),
        # engine/arg_utils.py@v0.17.1: throughput doubles the batch limits the command line leaves unset (the
        # profile's tokens among them), interactivity captures a graph for every batch size up to 32
        # (EngineArgs._set_default_max_num_seqs_and_batched_tokens_args; config/vllm.py@v0.29.0,
        # _set_cudagraph_sizes)
        GovernedFlag(
            ("--performance-mode",),
            "leave the performance mode at its default, balanced (the plan sizes its batch limits and CUDA "
            "graphs); set runtime.extraArgs --max-num-seqs or --max-num-batched-tokens instead",
        ),
        # The attention group (engine/arg_utils.py@v0.13.0), as VLLM_ATTENTION_BACKEND: the backend decides
        # the KV cache layout, and the config also sizes FlashAttention's CUDA graph buffers
        # (flash_attn_max_num_splits_for_cuda_graph)
        GovernedFlag(
            ("--attention-backend", "--attention-config", "-ac"),
            "leave the attention backend and its settings to vLLM: they decide the KV cache layout and the "
            "CUDA graph buffers the plan sizes",
        ),
        # The kernel group (engine/arg_utils.py@v0.16.0; --moe-backend @v0.17.1, --linear-backend @v0.22.1):
        # the MoE and linear backends decide the experts' and layers' weight layout (MXFP4 padding, Marlin
        # repacking, emulation's dequantized copies) and their workspaces
        GovernedFlag(
            ("--kernel-config", "--moe-backend", "--linear-backend"),
            "leave the kernels to vLLM: they decide the weight layout and workspaces the plan sizes",
        ),
        # From 0.34.0 the KV cache's sizing warm-up asks max_logprobs prompt logprobs (config/model.py: 20 by
        # default, -1 the whole vocabulary for every token; v1/worker/gpu/warmup.py@v0.34.0)
        GovernedFlag(
            ("--max-logprobs",),
            "leave it at its default, 20 (requests may still ask that many): from 0.34.0 vLLM sizes its KV "
            "cache after computing that many prompt logprobs, which the plan sizes at the default",
        ),
        # 0.34.0's switch between the extensible KV cache, sized after warm-up, and the profile's estimate
        # (a bool option, so argparse adds the --no- form; config/cache.py@v0.34.0)
        GovernedFlag(
            ("--enable-extensible-kv-cache", "--no-enable-extensible-kv-cache"),
            "leave the KV cache sizing at the release's default, which the plan sizes",
        ),
        GovernedFlag(
            ("--disable-sliding-window", "--disable-hybrid-kv-cache-manager"),
            "leave the KV cache layout to the model: the plan sizes its sliding-window layers' bounded "
            "cache, and these give every layer a cache of the full length",
        ),
        GovernedFlag(
            ("--hf-overrides", "--hf-config-path", "--rope-scaling", "--model-class-overrides"),
            "set spec.model.architecture instead (the plan sizes the shape of the model's own config.json)",
        ),
        # The multimodal group (engine/arg_utils.py@v0.11.0 and @v0.33.0): the number and size of the
        # dummy images the profile encodes (see VllmModel.encoder_profile), the encoder's copy on every
        # GPU, the profile skipped, and GPU memory for the front end's decoding and preprocessing.
        GovernedFlag(
            (
                "--limit-mm-per-prompt",
                "--mm-processor-kwargs",
                "--skip-mm-profiling",
                "--mm-encoder-tp-mode",
                "--enable-multimodal-encoder-data-parallel",
                "--mm-processor-device",
                "--mm-ipc-gpu-memory-gb",
                "--ec-manager-config",  # a custom encoder cache manager (engine/arg_utils.py@v0.28.0)
            ),
            "leave the multimodal settings at their defaults: they change the images the plan's encoder "
            "profile sizes, or put the encoder or its inputs in GPU memory the plan does not hold",
        ),
        # Disaggregated encoders (engine/arg_utils.py@v0.11.2 and @v0.16.0, config/multimodal.py@v0.34.0):
        # an instance that runs the vision encoder alone, and the connector that ships its outputs
        GovernedFlag(
            ("--mm-encoder-only", "--ec-transfer-config"),
            "serve the whole model without an encoder-cache connector: an encoder-only instance skips the "
            "language model and answers no generation request, and the connector's buffers are not planned",
        ),
        GovernedFlag(("--help", "-h"), EXITS),
        GovernedFlag(
            ("--no-enable-chunked-prefill",),
            "set runtime.extraArgs --max-num-batched-tokens instead (the plan counts on chunked prefill)",
        ),
        # Switches that pass alone. Given a value, --enable-chunked-prefill=false turns chunked prefill off
        # where the flag takes one (StoreBoolean, engine/arg_utils.py@v0.6.4.post1 to @v0.8.5), so the
        # profile runs whole prompts the plan does not count; where it takes none (store_true, or
        # argparse.BooleanOptionalAction from engine/arg_utils.py@v0.10.2), any value stops the server.
        GovernedFlag(
            ("--enable-chunked-prefill", "--enable-prefix-caching"),
            "write the switch alone, without a value (the plan counts on chunked prefill; prefix caching "
            "reuses the blocks the plan sized), or leave it out",
            bare_passes=True,
        ),
        GovernedFlag(
            ("--enforce-eager",),
            "write the switch alone, without a value (the plan then counts no CUDA graphs and no "
            "compilation), or leave it out",
            bare_passes=True,
            sets="engine_eager",
        ),
    ),
    planned=(
        PlannedFlag(("--max-num-batched-tokens",), "max_num_batched_tokens"),
        PlannedFlag(("--block-size",), "block_size", choices=(1, 8, 16, 32, 64, 128)),  # config/cache.py
        PlannedFlag(("--max-num-seqs",), "max_num_seqs"),
    ),
    # vllm/envs.py@v0.11.0, and @v0.20.0 for the profiler's graph estimate and FlashInfer's workspace,
    # @v0.32.0 for the model runner, @v0.34.0 for the variables added since v0.11.0: each changes memory the
    # plan sizes at the variable's default.
    governed_variables=(
        ("VLLM_USE_V1", "chooses the engine generation, which the plan takes from the release"),
        ("VLLM_USE_V2_MODEL_RUNNER", "chooses the model runner, which the plan takes from the release"),
        ("VLLM_ATTENTION_BACKEND", "chooses the attention backend, whose KV cache layout the plan sizes"),
        ("VLLM_KV_CACHE_LAYOUT", "changes the KV cache layout the plan sizes"),
        ("VLLM_USE_FLASHINFER_SAMPLER", "chooses the sampler, whose buffers the plan counts"),
        (
            "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS",
            "decides whether the profile counts the CUDA graphs inside the fraction, as the plan does",
        ),
        ("VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE", "sizes FlashInfer's workspace, counted at its default"),
        ("VLLM_FUSED_MOE_CHUNK_SIZE", "sizes the MoE activations, counted at its default"),
        # MXFP4 experts' kernels (envs.py@v0.11.0 to @v0.13.0; dequantizing at load, envs.py@v0.34.0): each
        # lays the weights out otherwise than the backend the plan pads them for
        *(
            (name, "chooses the MXFP4 experts' kernels, whose weight layout the plan sizes")
            for name in (
                "VLLM_MXFP4_USE_MARLIN",
                "VLLM_USE_FLASHINFER_MOE_MXFP4_BF16",
                "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8",
                "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8_CUTLASS",
            )
        ),
        (
            "VLLM_MXFP4_EMULATION_DEQUANT_AT_LOAD",
            "dequantizes emulated MXFP4 weights to 16 bits at load, about four times what the plan sizes",
        ),
        ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "loads LoRA adapters at run time, whose memory is not planned"),
    ),
)
# The module path, not `vllm serve`: it takes --model in every release.
RUNTIME = EngineRuntime(
    image="vllm/vllm-openai:v0.11.0",
    repositories=("vllm/vllm-openai",),
    command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
    port=8000,
    port_flag="--port",
    host_flag=None,
)


# Non-torch growth at TP 1 once the capture path runs inside the measurement (0.18.0 on): the largest a
# public log of a current release shows that is not a calibration row: 0.26 GiB on an RTX PRO 6000
# (the Qwen3.8-27B-K4 model card's verification run, companion repository malaiwah/qwen38-27b-exl3).
CAPTURE_PATH_NON_TORCH_BYTES = round(0.26 * GIB)

# PyTorch's caching allocator serves requests of 1-10 MiB from segments of this size (kLargeBuffer,
# c10/cuda/CUDACachingAllocator.cpp), so a pool can hold up to one such segment beyond its live tensors.
ALLOCATOR_LARGE_SEGMENT = 20 * MIB
# gptq_marlin's get_min_capability (80 in quantization/gptq_marlin.py@v0.5.2 and @v0.6.5; later releases
# also run Marlin on 7.5, where the plan still counts the zero points: the larger weights)
MARLIN_MIN_COMPUTE_CAPABILITY = 8
# FlashAttention's FULL graphs fix the number of KV splits and pre-allocate fp32 accumulators of
# [splits, heads, tokens, head size] and [splits, heads, tokens] (vllm/config/attention.py@v0.20.0,
# flash_attn_max_num_splits_for_cuda_graph; vllm/v1/attention/backends/flash_attn.py@v0.20.0).
FLASH_ATTN_SPLITS_FOR_CUDA_GRAPH = 32
# One more graph costs what the driver maps for its executable, growing with the layers whose kernels it
# records, and free memory shows it in 2 MiB steps (a sample is 0, 2, 4... MiB; vLLM floors it at 1 MiB).
# vLLM's source cannot say how much; the bound per layer is the most a public 0.19.0 debug log outside the
# calibration set shows (llm-d-planner's v0.19.0 H100 sweep: Llama-3.3-70B-Instruct at TP 2, 20 MiB over
# 80 dense layers; Llama-4-Scout at TP 4, 20 MiB over 48 MoE layers), and never under two steps, as one
# graph's memory may straddle a step. The calibration rows' own logs (1-20 MiB) only check it.
GRAPH_STEP_BYTES = 2 * MIB
DENSE_GRAPH_BYTES_PER_LAYER = 20 * MIB // 80
MOE_GRAPH_BYTES_PER_LAYER = 20 * MIB // 48
# FlashInfer's attention builder allocates its workspace on the first metadata it builds, so the profile's
# first FULL capture holds it (vllm/envs.py@v0.20.0, VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE;
# vllm/v1/attention/backends/flashinfer.py@v0.20.0, _get_workspace_buffer). Where it runs: see
# VllmModel.flash_attention_runs.
FLASHINFER_WORKSPACE_BYTES = 394 * MIB
FLASH_ATTN_FIRST_MAJORS = (8, 9)
HOPPER_MAJOR = 9  # FlashAttention 3, which reads an fp8 KV cache
# The ceilings of the capture sizes: the default, gpt-oss's own (models/config.py@v0.20.0,
# GptOssForCausalLMConfig.verify_and_update_config), data-center Blackwell's from 0.28.0.
CAPTURE_CEILING = 512
LARGE_CAPTURE_CEILING = 1024


# vLLM's Marlin MoE kernel wants n % 256 == 0 and k % 128 == 0 in both expert matrices, and keeps the
# experts' biases in the compute dtype (vllm/model_executor/layers/quantization/mxfp4.py@v0.11.0,
# create_weights; quantization/utils/marlin_utils_fp4.py@v0.11.0, prepare_moe_fp4_layer_for_marlin: the
# repacked weights and the e8m0 scales keep their byte counts).
MARLIN_MXFP4 = ExpertPadding(128, 256, bias_bytes=2)
# The Triton and FlashInfer paths hold the biases in fp32 (mxfp4.py@v0.11.0 and @v0.12.0,
# process_weights_after_loading).
FP32_BIASES = 4


class Batching(Enum):
    """How vLLM picks `max_num_batched_tokens` and `max_num_seqs` when the command line does not: the
    batch its profile run passes through the model."""

    WHOLE_PROMPT = "V0: max(max_model_len, 2048) tokens, no chunked prefill"
    CHUNKED_512_ABOVE_32K = "V0: as before; above 32K context chunked prefill turns on with 512 tokens"
    CHUNKED_2048_ABOVE_32K = "V0: as before, chunks of 2048 tokens"
    V1_H100_BY_NAME = "V1: 8192 tokens / 1024 seqs on H100 and H200, else 2048 / 256"
    V1_70GIB = "V1: 8192 / 1024 on GPUs of >= 70 GiB, else 2048 / 256"
    V1_70GIB_NOT_A100 = "V1: as before, A100 excepted"
    V1_160GIB_TIER = "V1: as before; 16384 / 1024 on GPUs of >= 160 GiB"


class Accounting(Enum):
    """What vLLM subtracts from `fraction x total` before the KV cache, besides the weights."""

    ALLOCATED_PEAK = "torch's allocated peak only: non-torch memory is not counted"
    USED_MEMORY = "total - free after profiling: the CUDA context and all non-torch memory count"
    FREE_DROP = "free memory at start - free after profiling: non-torch counts, the CUDA context does not"
    CONTEXT_INSIDE = "allocated peak + every non-torch byte on the GPU, the CUDA context included"
    BASELINE = "allocated peak + non-torch growth since start: the CUDA context does not count"


ALIGNED_CACHE_ENTRY_BYTES = 256  # utils.py@v0.7.3, align_to_256bytes


class MlaCache(Enum):
    """How DeepSeek-V2/V3's multi-head latent attention is cached."""

    PADDED_HEADS = "full K and V per head, padded to 256 for FlashAttention"
    QK_HEADS = "full K and V per head of qk_nope_head_dim + qk_rope_head_dim (V padded to it)"
    LATENT = "kv_lora_rank + qk_rope_head_dim once per GPU"
    # the latent's entry rounded up to 256 bytes of the compute dtype (VllmModel.mla_latent_alignment)
    LATENT_ALIGNED = "kv_lora_rank + qk_rope_head_dim once per GPU, aligned to 256 bytes"


class Sampler(Enum):
    """Which top-k/top-p path the profile run's dummy sampling takes, by its bytes per logit."""

    SORT = 38.4  # PyTorch sort of the fp32 logits with their indices and softmax copies
    # Triton top-k/top-p in place, no sort: the lm_head's bf16 logits (2 bytes), their fp32 copy (4), the
    # softmax probabilities (4) and the exponential noise random_sample divides by (4)
    # (vllm/v1/sample/sampler.py, ops/topk_topp_sampler.py@v0.19.0).
    TRITON = 14.0
    FLASHINFER = 10.0  # FlashInfer's sampling kernels


class ModelRunner(Enum):
    """Which models the V2 model runner serves when VLLM_USE_V2_MODEL_RUNNER is unset (use_v2_model_runner
    and _is_default_v2_model_runner_model in vllm/config/vllm.py); the rest run on the V1 runner."""

    V1 = "every model on the V1 runner"
    V2_LISTED_DENSE = "V2 for the listed model types, unquantized and without experts"
    V2_LISTED = "V2 for the listed model types"
    V2_LISTED_OR_DENSE = "V2 for the listed model types and every model without experts"
    V2 = "V2 for every model"


class KvTokensReport(Enum):
    """How "GPU KV cache size: N tokens" turns the pool's blocks into tokens."""

    GROUP_BLOCKS = "whole blocks of every KV cache group at once, times the block size"
    # max_concurrency x max_model_len, the concurrency counting each group's blocks per max-length request:
    # sliding-window groups need only their window's, so a hybrid model shows more tokens
    CONCURRENCY_X_LENGTH = "max-length requests the blocks hold (fractions included) x max_model_len"


class EncoderBatch(Enum):
    """How many images the V1 profile runs a multimodal encoder on: its budget (the larger of
    max_num_batched_tokens and one image's embeddings) over one image's embeddings."""

    NOT_PROFILED = "V0: images ride in the dummy sequences (not modelled)"
    ROUNDED_UP = "budget / embeddings per image, rounded up"
    ROUNDED_DOWN = "budget / embeddings per image, rounded down"


class CaptureSizes(Enum):
    """Which token counts the default compilation config captures CUDA graphs for (no speculative
    decoding): 1, 2, 4, every 8 below 256, every 16 from 256, up to min(2 x max_num_seqs, ceiling,
    max_num_batched_tokens); the mixed (PIECEWISE) graphs at each, the decode (FULL) graphs at those up to
    max_num_seqs (vllm/config/vllm.py, _set_cudagraph_sizes; vllm/v1/cudagraph_dispatcher.py,
    initialize_cudagraph_keys)."""

    STRIDED = "the strided sizes, ceiling 512 (1024 for gpt-oss)"
    WITH_BATCH_TOKENS = "as before, and max_num_batched_tokens when it is under the largest"
    BLACKWELL_1024 = "as before; the ceiling is 1024 on data-center Blackwell (compute capability 10)"
    WITH_MAX_SEQS = "as before, and max_num_seqs (a decode size off the stride) when it is under the largest"


@dataclass(frozen=True)
class CudaGraphProfile:
    """The capture vLLM's profile runs to estimate its CUDA graph memory, on one GPU: per mode, the
    largest size captured first (warm-up, then capture into a profiling pool shared by both modes), the
    second largest next, and the rest extrapolated from that second sample
    (vllm/v1/worker/gpu_model_runner.py, profile_cudagraph_memory):
    estimate = max(first capture of each mode) + sum over modes of (graphs - 1) x max(second sample, 1 MiB).
    """

    piecewise_graphs: int
    full_graphs: int
    largest_piecewise_tokens: int
    largest_full_tokens: int

    def bound_bytes(self, first_full_bytes: int, forward_bytes_per_token: int, per_graph_bytes: int) -> int:
        """The estimate's bound, given what the attention backend allocates in the first FULL capture,
        the forward's live bytes per token and the bound on one further graph.

        The first PIECEWISE capture reserves the forward's tensors at the largest size twice, the warm-up's
        in the default pool and the capture's in the graph pool; the first FULL capture, which reuses the
        pool the PIECEWISE graphs left, adds the attention backend's buffers. Each pool holding a request of
        1-10 MiB can hold up to one more 20 MiB segment (kLargeBuffer in PyTorch's caching allocator) than
        its live bytes."""
        piecewise = 2 * (self.largest_piecewise_tokens * forward_bytes_per_token + ALLOCATOR_LARGE_SEGMENT)
        full = first_full_bytes + ALLOCATOR_LARGE_SEGMENT if self.full_graphs else 0
        further = max(self.piecewise_graphs - 1, 0) + max(self.full_graphs - 1, 0)
        return max(piecewise, full) + further * per_graph_bytes


def cuda_graph_capture_sizes(
    rule: CaptureSizes, ceiling: int, max_num_seqs: int, max_num_batched_tokens: int
) -> list[int]:
    """The token counts the default config captures, ascending (vllm/config/vllm.py, _set_cudagraph_sizes)."""
    largest = min(2 * max_num_seqs, ceiling, max_num_batched_tokens)
    sizes = {size for size in (1, 2, 4) if size <= largest}
    sizes |= set(range(8, min(largest + 1, 256), 8)) | set(range(256, largest + 1, 16))
    if rule is not CaptureSizes.STRIDED and max_num_batched_tokens <= largest:
        sizes.add(max_num_batched_tokens)
    if rule is CaptureSizes.WITH_MAX_SEQS and max_num_seqs <= largest:
        sizes.add(max_num_seqs)
    return sorted(sizes)


@functools.lru_cache(maxsize=1024)  # a plan asks for the same few limits on every GPU type
def _capture_profile(
    rule: CaptureSizes, ceiling: int, max_num_seqs: int | None, max_num_batched_tokens: int
) -> CudaGraphProfile:
    """The graphs of each mode for a batch limit (None: any, the most) under a ceiling."""
    seqs = ceiling // 2 if max_num_seqs is None else max(max_num_seqs, 1)
    sizes = cuda_graph_capture_sizes(rule, ceiling, seqs, max_num_batched_tokens)
    full = [size for size in sizes if size <= (ceiling if max_num_seqs is None else seqs)]
    return CudaGraphProfile(len(sizes), len(full), sizes[-1], full[-1] if full else 0)


@dataclass(frozen=True)
class Release(ReleaseRow):
    """One row of vLLM's release table: from `first` on (until the next row), start-up memory behaves as
    these fields say. `source` is where each boundary was read, as file@tag."""

    v0_engine: bool
    batching: Batching
    accounting: Accounting
    sampler: Sampler  # the path without FlashInfer
    flashinfer_sampler: bool  # FlashInfer samples by default where the install has it (and the GPU)
    mla_cache: MlaCache
    mla_absorbed_weights: bool  # V0 MLA keeps absorbed decode matrices (VllmModel.derived_weight_bytes)
    mla_only_unquantized_or_fp8: bool  # a checkpoint in another format runs MLA as full K and V heads
    hybrid_kv_cache: bool  # sliding-window layers keep only their window
    larger_group_below: float  # layer groups take the larger type's count below this ratio (KvLayout)
    kv_tokens_report: KvTokensReport
    encoder_batch: EncoderBatch
    allreduce_outputs_reserved: bool  # freed TP all-reduce outputs wait on NCCL's stream through the profile
    cuda_graphs_inside_fraction: bool  # the profile's CUDA graph estimate counts against the KV cache
    capture_sizes: CaptureSizes
    mxfp4_experts_on_hopper: ExpertPadding  # how MXFP4 experts are stored on SM90 with the wheel's kernels
    moe_workspace_persists: bool  # fused-MoE workspaces stay allocated from the profile's forward on
    # Triton top-k/top-p caches a vocab-wide fp32 row per program (up to one per SM) from the profile on
    topk_topp_program_buffer: bool
    model_runner: ModelRunner  # which models the V2 runner serves by default
    v2_model_types: frozenset[str]  # the model types it lists (ModelRunner.V2_LISTED*)
    # V2's profile samples its dummy batch with no sampling parameters: the logits in the compute dtype,
    # before 0.26.0 also copied to fp32 (VllmModel.sampler_logit_bytes)
    v2_sampler_copies_fp32: bool
    v2_estimates_cuda_graphs: bool  # the V2 runner's profile estimates its CUDA graphs (else 0 inside)
    # A cold compile inside the profile benchmarks Inductor's kernels on random copies of their inputs,
    # the embedding table among them (VllmModel.compile_profile_bytes)
    compile_copies_embedding: bool
    non_torch_bytes: int  # non-torch growth the budget subtracts at TP 1 (where the accounting counts it)
    # max_split_size_mb the allocator loads the weights under (None: PyTorch's default, no limit)
    load_max_split_bytes: int | None
    gptq_marlin: bool  # symmetric GPTQ runs on Marlin from compute capability 8.0, without zero points
    # (hidden-wide, intermediate-wide) tensors alive where a layer's MLP may peak (EngineModel.mlp_peaks)
    mlp_peaks: tuple[tuple[int, int], ...]
    # The KV cache is measured after the warm-up steps and the CUDA graph capture, and keeps free the
    # transient peak and a margin beyond it (VllmModel.warmup_reserve)
    kv_sized_after_warmup: bool
    block_size: int  # the KV block size the release defaults to on the attention backends the plan sizes


def _table() -> tuple[Release, ...]:
    table = ReleaseTable(Release)
    add = table.add

    add(
        (0, 2, 0),
        "V0 engine; the profile prefills max(max_model_len, 2048) tokens over 256 sequences and samples "
        "with top-k/top-p (sort); the KV budget subtracts torch's allocated peak only. The forward runs "
        "eagerly: while a layer's MLP computes, LlamaModel.forward's loop still holds the previous "
        "layer's output (the normed attention input), beside the residual, the MLP's input, gate_up's "
        "output (kept by LlamaMLP.forward until it returns), SiluAndMul's and the down projection's: "
        "4 hidden-wide and 3 intermediate-wide tensors",
        "vllm/config.py@v0.2.0, vllm/worker/worker.py@v0.2.0, "
        "vllm/model_executor/models/llama.py@v0.2.0 and @v0.6.3.post1 (LlamaModel.forward, LlamaMLP.forward)",
        v0_engine=True,
        batching=Batching.WHOLE_PROMPT,
        accounting=Accounting.ALLOCATED_PEAK,
        sampler=Sampler.SORT,
        flashinfer_sampler=False,
        mla_cache=MlaCache.PADDED_HEADS,
        mla_absorbed_weights=False,
        mla_only_unquantized_or_fp8=False,
        hybrid_kv_cache=False,
        larger_group_below=1.0,
        kv_tokens_report=KvTokensReport.GROUP_BLOCKS,
        encoder_batch=EncoderBatch.NOT_PROFILED,
        allreduce_outputs_reserved=False,
        cuda_graphs_inside_fraction=False,
        capture_sizes=CaptureSizes.STRIDED,
        mxfp4_experts_on_hopper=MARLIN_MXFP4,
        moe_workspace_persists=False,
        topk_topp_program_buffer=False,
        compile_copies_embedding=False,
        model_runner=ModelRunner.V1,
        v2_model_types=frozenset(),
        v2_sampler_copies_fp32=True,
        v2_estimates_cuda_graphs=False,
        non_torch_bytes=EngineModel.non_torch_bytes,
        load_max_split_bytes=None,
        gptq_marlin=False,
        mlp_peaks=((4, 3),),
        kv_sized_after_warmup=False,
        block_size=16,
    )
    add(
        (0, 2, 5),
        "the budget subtracts total - free memory: the CUDA context, non-torch memory and the caching "
        "allocator's reserved blocks count (PR #2031); every TP all-reduce goes through torch.distributed "
        "(torch 2.1), whose NCCL collectives record their tensors on NCCL's stream: freed all-reduce "
        "outputs wait on it, and each layer reserves new blocks for its attention output and for the "
        "activation block that output takes (see VllmModel.reserved_profile_bytes)",
        "vllm/worker/worker.py@v0.2.5, vllm/model_executor/parallel_utils/communication_op.py@v0.2.5, "
        "vllm/model_executor/models/llama.py@v0.2.5, requirements.txt@v0.2.5",
        accounting=Accounting.USED_MEMORY,
        allreduce_outputs_reserved=True,
    )
    add(
        (0, 2, 6),
        "the worker sets TORCH_NCCL_AVOID_RECORD_STREAMS=1 before NCCL starts: torch.distributed no longer "
        "records all-reduce tensors on its stream, and freed outputs are reused at once (custom all-reduce, "
        "from 0.3.0, takes only inputs up to 8 MiB, so the profile's still go through NCCL)",
        "vllm/worker/worker.py@v0.2.6 (Worker.init_model), "
        "vllm/model_executor/parallel_utils/custom_all_reduce.py@v0.3.0 (max_size)",
        allreduce_outputs_reserved=False,
    )
    add(
        (0, 3, 1),
        "the budget subtracts the drop in free memory since the worker started: no CUDA context",
        "vllm/worker/worker.py@v0.3.1",
        accounting=Accounting.FREE_DROP,
    )
    add(
        (0, 5, 2),
        "a GPTQ checkpoint with sym true runs as gptq_marlin from compute capability 8.0, and its zero "
        "points never reach the GPU: qzeros is created on the meta device (0.5.2), later replaced by an "
        "empty tensor after loading (MarlinLinearKernel, zero_points=False for GPTQ)",
        "vllm/model_executor/layers/quantization/gptq_marlin.py@v0.5.2 (is_gptq_marlin_compatible, "
        "create_weights), quantization/kernels/marlin.py@v0.6.5, quantization/auto_gptq.py@v0.28.0",
        gptq_marlin=True,
    )
    add(
        (0, 5, 3),
        "above 32K context chunked prefill turns on by itself (not for sliding-window models), 512 tokens",
        "vllm/engine/arg_utils.py@v0.5.3, vllm/config.py@v0.5.3",
        batching=Batching.CHUNKED_512_ABOVE_32K,
    )
    add(
        (0, 6, 4),
        "non-torch memory is everything used on the GPU beyond torch's tensors: the CUDA context counts; "
        "LlamaMLP.forward rebinds its input name to gate_up's output, which is freed once SiluAndMul "
        "returns: the MLP peaks at 3 hidden + 3 intermediate (SiluAndMul) or 4 hidden + 1 intermediate "
        "(the down projection)",
        "vllm/worker/worker.py@v0.6.4, vllm/model_executor/models/llama.py@v0.6.4 (LlamaMLP.forward)",
        accounting=Accounting.CONTEXT_INSIDE,
        mlp_peaks=((3, 3), (4, 1)),
    )
    add(
        (0, 6, 5),
        "memory is measured from a baseline taken at start (PR #10511): the CUDA context is outside again; "
        "automatic chunked prefill takes 2048-token chunks (512 in 0.6.4.post1)",
        "vllm/worker/worker.py@v0.6.5, vllm/utils.py@v0.6.5, vllm/config.py@v0.6.5 "
        "(SchedulerConfig.__post_init__), vllm/config.py@v0.6.4.post1",
        accounting=Accounting.BASELINE,
        batching=Batching.CHUNKED_2048_ABOVE_32K,
    )
    add(
        (0, 7, 0),
        "MLA (DeepSeek-V2/V3) keeps full K and V per head, no longer padded to 256: qk_nope + qk_rope wide",
        "vllm/config.py@v0.7.0 (get_head_size), vllm/model_executor/models/deepseek_v2.py@v0.7.0; "
        "256 before: vllm/config.py@v0.6.5",
        mla_cache=MlaCache.QK_HEADS,
    )
    add(
        (0, 7, 1),
        "MLA (DeepSeek-V2/V3) caches kv_lora_rank + qk_rope_head_dim once per GPU; after loading, each "
        "MLA layer absorbs W_UK into the query projection and W_UV into o_proj for decode "
        "(VLLM_MLA_PERFORM_MATRIX_ABSORPTION defaults to 1) and keeps both products and the query's rope "
        "part, copied contiguous, beside the raw weights the prefill path still uses",
        "vllm/config.py@v0.7.1 (use_mla, get_head_size), "
        "vllm/attention/backends/mla/utils.py@v0.7.1 and @v0.7.3 (process_weights_after_loading), "
        "vllm/envs.py@v0.7.1; MLA is off for a checkpoint quantized in a format other than fp8 (use_mla), "
        "which then caches full K and V heads of qk_nope_head_dim + qk_rope_head_dim (get_head_size)",
        mla_cache=MlaCache.LATENT,
        mla_absorbed_weights=True,
        mla_only_unquantized_or_fp8=True,
    )
    add(
        (0, 7, 2),
        "V0's cache engine rounds each MLA cache entry up to 256 bytes of the model's dtype "
        "(VLLM_CUDA_MEM_ALIGN_KV_CACHE defaults to 1) and counts its blocks at that size: "
        "DeepSeek's 576-wide latent takes 640 elements",
        "vllm/worker/cache_engine.py@v0.7.2 and @v0.7.3 (get_cache_block_size, _align_cache), "
        "vllm/utils.py@v0.7.3 (align_to_256bytes), vllm/envs.py@v0.7.2; none in "
        "vllm/worker/cache_engine.py@v0.7.1",
        mla_cache=MlaCache.LATENT_ALIGNED,
    )
    add(
        (0, 7, 3),
        "MLA runs for any quantized checkpoint: the decode path dequantizes kv_b_proj, q_proj and o_proj "
        "to absorb them (in the compute dtype, fp8 for an fp8 checkpoint)",
        "vllm/config.py@v0.7.3 (use_mla), vllm/attention/backends/mla/utils.py@v0.7.3 "
        "(process_weights_after_loading, get_layer_weight); the fp8-only check: vllm/config.py@v0.7.2",
        mla_only_unquantized_or_fp8=False,
    )
    add(
        (0, 8, 0),
        "the V1 engine: 8192 batched tokens and 1024 sequences on H100/H200, else 2048 and 256; "
        "FlashInfer samples top-k/top-p when installed (the official image has it); a multimodal model's "
        "profile first runs its encoder on a batch of dummy images and keeps their pixels and embeddings "
        "through the text profile (see VllmModel.encoder_profile); the model runs compiled (piecewise, "
        "Inductor), not through Python frames that keep tensors alive: the MLP peak of 3 hidden + 3 "
        "intermediate tensors the V1 start-up logs were calibrated on",
        "vllm/engine/arg_utils.py@v0.8.0, vllm/v1/sample/ops/topk_topp_sampler.py@v0.8.0, "
        "docker/Dockerfile@v0.8.0, vllm/v1/worker/gpu_model_runner.py@v0.8.0 (profile_run), "
        "vllm/config.py@v0.8.1 (VllmConfig.__post_init__); V0's MLA no longer absorbs: W_UK and W_UV "
        "stay views of kv_b_proj (vllm/attention/backends/mla/common.py@v0.8.0, "
        "process_weights_after_loading), and its cache engine no longer aligns MLA entries "
        "(vllm/worker/cache_engine.py@v0.8.0)",
        v0_engine=False,
        mla_absorbed_weights=False,
        mla_cache=MlaCache.LATENT,
        batching=Batching.V1_H100_BY_NAME,
        flashinfer_sampler=True,
        encoder_batch=EncoderBatch.ROUNDED_UP,
        mlp_peaks=((3, 3),),
    )
    add(
        (0, 8, 5),
        "the larger V1 batch applies to every GPU of 70 GiB and more",
        "vllm/engine/arg_utils.py@v0.8.5",
        batching=Batching.V1_70GIB,
    )
    add(
        (0, 9, 0),
        "A100s keep the smaller batch",
        "vllm/engine/arg_utils.py@v0.9.0",
        batching=Batching.V1_70GIB_NOT_A100,
    )
    add(
        (0, 9, 1),
        "the hybrid KV allocator: sliding-window layers keep only their window; layers are grouped by "
        "attention type, as many per group as the type with the fewest layers has (the other type's last "
        "group padded), and the printed token count is whole blocks of every group at once (0.9.0 still "
        "turned sliding-window layers into full attention)",
        "vllm/v1/core/kv_cache_utils.py@v0.9.1 (_get_kv_cache_config_uniform_page_size), "
        "vllm/v1/core/kv_cache_utils.py@v0.9.0 (unify_hybrid_kv_cache_specs)",
        hybrid_kv_cache=True,
    )
    add(
        (0, 10, 0),
        "the encoder profile's image count rounds down",
        "vllm/v1/worker/gpu_model_runner.py@v0.10.0 (profile_run); cdiv in "
        "vllm/v1/worker/gpu_model_runner.py@v0.9.1",
        encoder_batch=EncoderBatch.ROUNDED_DOWN,
    )
    add(
        (0, 11, 1),
        "FlashInfer sampling becomes opt-in (VLLM_USE_FLASHINFER_SAMPLER=1): top-k/top-p sort; "
        "with torch 2.9 the compilation config turns on Inductor's combo kernels and their benchmarking; "
        "the model compiles inside the profile's first forward pass (unless a compile cache from an earlier "
        "start is loaded), and Inductor groups the kernels of each topological level, 8 at a time, then "
        "times every kernel of a group on random copies of all its arguments: the embedding lookup "
        "depends only on the graph's inputs, as the rotary cos/sin lookup by position does, and is timed "
        "on a copy of the whole embedding table (the "
        "GPU's share of the vocabulary x hidden, in the compute dtype) and of its output, so the torch peak "
        "the profile measures holds them (see VllmModel.compile_profile_bytes)",
        "vllm/v1/sample/ops/topk_topp_sampler.py@v0.11.1, "
        "vllm/config/compilation.py@v0.11.1 and @v0.33.0 (combo_kernels, benchmark_combo_kernel), "
        "requirements/cuda.txt@v0.11.1 (torch 2.9.0), vllm/compilation/decorators.py@v0.29.0 (the first "
        "call compiles, an AOT cache loads instead), vllm/v1/worker/gpu_worker.py@v0.29.0 "
        "(determine_available_memory); Inductor's scheduler.py (speedup_by_combo_kernel, "
        "_default_group_nodes_for_combo_kernels) and codegen/simd.py (benchmark_combo_kernel: get_args)",
        compile_copies_embedding=True,
        flashinfer_sampler=False,
    )
    add(
        (0, 12, 0),
        "the CUDA wheel builds triton_kernels v3.5.0 in (vllm.third_party), so Hopper's MXFP4 experts take "
        "the Triton backend: intermediate padded to 64 only, the packed weights swizzled in 16 x 32-byte "
        "tiles, a swizzled copy of the scales beside the checkpoint's, biases in fp32",
        "cmake/external_projects/triton_kernels.cmake@v0.12.0, vllm/utils/import_utils.py@v0.12.0 "
        "(has_triton_kernels), vllm/model_executor/layers/quantization/mxfp4.py@v0.12.0 (get_mxfp4_backend, "
        "create_weights, process_weights_after_loading), quantization/utils/mxfp4_utils.py@v0.12.0 "
        "(_swizzle_mxfp4)",
        mxfp4_experts_on_hopper=ExpertPadding(64, 1, MxSwizzle.TILES, bias_bytes=FP32_BIASES),
    )
    add(
        (0, 12, 0),
        "the hybrid allocator's group size is the larger type's layer count when that is under 1.25 times "
        "the smaller's (fewer padding layers)",
        "vllm/v1/core/kv_cache_utils.py@v0.12.0 (_get_kv_cache_groups_uniform_page_size); "
        "the smaller count alone: vllm/v1/core/kv_cache_utils.py@v0.11.2",
        larger_group_below=1.25,
    )
    add(
        (0, 14, 0),
        "unquantized MoE runs TritonExperts through the modular kernel, whose workspaces (M x top-k x "
        "(max(intermediate, hidden) + max(2 x intermediate, hidden)) in the compute dtype) the workspace "
        "manager keeps from the profile's forward pass through its sampler",
        "vllm/model_executor/layers/fused_moe/unquantized_fused_moe_method.py@v0.14.0, "
        "vllm/model_executor/layers/fused_moe/modular_kernel.py@v0.14.0, "
        "vllm/v1/worker/workspace.py@v0.14.0, "
        "vllm/model_executor/layers/fused_moe/fused_moe.py@v0.14.0 (TritonExperts.workspace_shapes)",
        moe_workspace_persists=True,
    )
    add(
        (0, 17, 0),
        "Triton top-k/top-p for batches of 8 and more: no full sort of the logits, but a scratch buffer "
        "cached per device, one fp32 vocab-wide row per program, min(next_power_of_2(min(SMs, batch)), SMs) "
        "programs, which the profile's dummy sampling (top-k and top-p set, max_num_seqs rows) allocates and "
        "keeps (the same through v0.33.0, where smaller batches take Triton too); triton_kernels v3.6.0 "
        "pads both dimensions of the packed MXFP4 weights to 64 bytes before swizzling (v0.22.0 goes back to "
        "v3.5.1, whose layout was not read: the larger v3.6.0 layout is kept)",
        "vllm/v1/sample/ops/topk_topp_sampler.py@v0.17.0 (apply_top_k_top_p), "
        "vllm/v1/sample/ops/topk_topp_triton.py@v0.17.0 (apply_top_k_top_p_triton, _TRITON_BUFFER_CACHE), "
        "vllm/v1/worker/gpu_model_runner.py@v0.17.0 (_dummy_sampler_run), "
        "vllm/v1/sample/ops/topk_topp_triton.py@v0.33.0, "
        "cmake/external_projects/triton_kernels.cmake@v0.17.0, "
        "cmake/external_projects/triton_kernels.cmake@v0.22.0",
        sampler=Sampler.TRITON,
        topk_topp_program_buffer=True,
        mxfp4_experts_on_hopper=ExpertPadding(64, 1, MxSwizzle.PADDED_64, bias_bytes=FP32_BIASES),
    )
    add(
        (0, 18, 0),
        "the hybrid allocator takes the larger type's layer count under 1.5 times the smaller's; the "
        "after-profile snapshot now follows CUDA graph memory profiling (warm-up and capture of up to two "
        "graphs per mode, then cleared), so what the capture path leaves outside torch's allocator (its "
        "kernels' modules, loaded lazily, and the driver's graph state) counts as non-torch growth: "
        "0.26 GiB at TP 1, the most a public current-release log outside the calibration set shows "
        "(0.13 GiB in the 0.14.1 logs, 0.16 GiB in a 0.26.0 log on a 16 GiB Hopper part)",
        "vllm/v1/core/kv_cache_utils.py@v0.18.0 (_get_kv_cache_groups_uniform_page_size), "
        "vllm/v1/worker/gpu_worker.py@v0.18.0 (determine_available_memory), "
        "vllm/v1/worker/gpu_model_runner.py@v0.18.0 (profile_cudagraph_memory), "
        "vllm/utils/mem_utils.py@v0.18.0 (memory_profiling, MemorySnapshot)",
        larger_group_below=1.5,
        non_torch_bytes=CAPTURE_PATH_NON_TORCH_BYTES,
    )
    add(
        (0, 20, 0),
        "the profile's CUDA graph estimate counts inside the fraction "
        "(VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1; 0 turns it off, as --enforce-eager and "
        "cudagraph_mode NONE do): the first capture of "
        "each mode, the larger counted, plus every further graph at the second-largest size's sample; "
        "cudagraph_mode FULL_AND_PIECEWISE by default, FlashAttention's FULL graphs pre-allocating 32 splits "
        "of fp32 accumulators (see VllmModel.cuda_graph_bytes_for; the same through v0.33.0)",
        "vllm/envs.py@v0.20.0, vllm/v1/worker/gpu_worker.py@v0.20.0 (determine_available_memory), "
        "vllm/v1/worker/gpu_model_runner.py@v0.20.0 (profile_cudagraph_memory, _warmup_and_capture), "
        "vllm/v1/cudagraph_dispatcher.py@v0.20.0, vllm/config/vllm.py@v0.20.0 (_set_cudagraph_sizes), "
        "vllm/config/compilation.py@v0.20.0, vllm/config/attention.py@v0.20.0, "
        "vllm/v1/attention/backends/flash_attn.py@v0.20.0, vllm/model_executor/models/config.py@v0.20.0 "
        "(GptOssForCausalLMConfig), vllm/v1/worker/gpu_model_runner.py@v0.29.0 to @v0.33.0",
        cuda_graphs_inside_fraction=True,
    )
    add(
        (0, 21, 0),
        "max_num_batched_tokens joins the capture sizes when it is under the largest; the weights load "
        "with the allocator's max_split_size_mb at 20, so a weight of 20 MiB or more keeps its whole "
        "segment, rounded up to 2 MiB",
        "vllm/config/vllm.py@v0.21.0 (_set_cudagraph_sizes), "
        "vllm/v1/worker/gpu_worker.py@v0.21.0 (load_model, _scoped_allocator_max_split)",
        capture_sizes=CaptureSizes.WITH_BATCH_TOKENS,
        load_max_split_bytes=20 * MIB,
    )
    add(
        (0, 22, 0),
        "the printed KV cache size is max concurrency x max_model_len: a hybrid model's sliding-window "
        "groups count only the blocks of their window per request",
        "vllm/v1/core/kv_cache_utils.py@v0.22.0 (_report_kv_cache_config, "
        "get_max_concurrency_for_kv_cache_config), vllm/v1/core/kv_cache_utils.py@v0.28.0 "
        "(get_kv_cache_capacity)",
        kv_tokens_report=KvTokensReport.CONCURRENCY_X_LENGTH,
    )
    add(
        (0, 23, 0),
        "FlashInfer samples by default again where the GPU supports it and its kernels compile; FlashInfer "
        "is a requirement of the CUDA wheel",
        "vllm/v1/sample/ops/topk_topp_sampler.py@v0.23.0 (flashinfer_sampler_supported), "
        "requirements/cuda.txt@v0.23.0",
        flashinfer_sampler=True,
    )
    add(
        (0, 23, 0),
        "the V2 model runner serves Qwen3, Llama and Mistral by default (unquantized, without experts; V1 "
        "runs the rest). Its profile samples a dummy batch whose requests set no sampling parameters: "
        "greedy, no top-k or top-p, so neither FlashInfer nor Triton top-k/top-p runs; the logits, in the "
        "compute dtype, are copied to fp32 and Gumbel-sampled per 1024-wide block. (0.22.0 served Qwen3 "
        "alone, and not with a reasoning parser, which a Qwen3 start often sets: it keeps V1's sampler.)",
        "vllm/config/vllm.py@v0.23.0 (use_v2_model_runner, _is_default_v2_model_runner_model, "
        "DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES, _get_v2_model_runner_unsupported_features), "
        "vllm/config/vllm.py@v0.22.0 and vllm/engine/arg_utils.py@v0.22.0 (reasoning_config), "
        "vllm/v1/worker/gpu/model_runner.py@v0.23.0 (_dummy_sampler_run), "
        "vllm/v1/worker/gpu/sample/sampler.py@v0.23.0 (apply_sampling_params), "
        "vllm/v1/worker/gpu/sample/states.py@v0.29.0 (SamplingStates)",
        model_runner=ModelRunner.V2_LISTED_DENSE,
        v2_model_types=frozenset({"qwen3", "llama", "mistral"}),
    )
    add(
        (0, 24, 0),
        "the listed model types run on V2 quantized or with experts too, and DeepSeek-V2, Qwen2-MoE and "
        "Granite-MoE join them",
        "vllm/config/vllm.py@v0.24.0 (_is_default_v2_model_runner_model, "
        "DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES)",
        model_runner=ModelRunner.V2_LISTED,
        v2_model_types=frozenset({"qwen3", "llama", "mistral", "deepseek_v2", "qwen2_moe", "granitemoe"}),
    )
    add(
        (0, 25, 0),
        "the Triton MXFP4 backend frees the checkpoint's scales once swizzled",
        "vllm/model_executor/layers/fused_moe/oracle/mxfp4.py@v0.25.0 (convert_to_mxfp4_moe_kernel_format)",
        mxfp4_experts_on_hopper=ExpertPadding(
            64, 1, MxSwizzle.PADDED_64, checkpoint_scales_kept=False, bias_bytes=FP32_BIASES
        ),
    )
    add(
        (0, 25, 0),
        "every model without experts runs on the V2 model runner by default, and of those with experts the "
        "listed DeepSeek-V2, Qwen2-MoE and Granite-MoE (later releases list more, not modelled: they keep "
        "V1's larger sampler)",
        "vllm/config/vllm.py@v0.25.0 and @v0.28.0 (_is_default_v2_model_runner_model, "
        "DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES)",
        model_runner=ModelRunner.V2_LISTED_OR_DENSE,
        v2_model_types=frozenset({"deepseek_v2", "qwen2_moe", "granitemoe"}),
    )
    add(
        (0, 26, 0),
        "V2's sampler processes logits in place, in their dtype: the profile's dummy batch, which asks for "
        "no logprobs, gets no copy",
        "vllm/v1/worker/gpu/sample/sampler.py@v0.26.0 (apply_sampling_params) and @v0.27.0 "
        "(_requires_logits_processing)",
        v2_sampler_copies_fp32=False,
    )
    add(
        (0, 28, 0),
        "GPUs of 160 GiB and more batch 16384 tokens",
        "vllm/engine/arg_utils.py@v0.28.0",
        batching=Batching.V1_160GIB_TIER,
    )
    add(
        (0, 28, 0),
        "data-center Blackwell captures CUDA graphs up to 1024 tokens",
        "vllm/config/vllm.py@v0.28.0 (_set_cudagraph_sizes)",
        capture_sizes=CaptureSizes.BLACKWELL_1024,
    )
    add(
        (0, 29, 0),
        "the V2 model runner serves every model by default, on CUDA with Triton, where the config uses "
        "nothing it lacks (the features it lacks are ones the operator refuses: LoRA and most "
        "speculative methods among them); its profile now estimates the CUDA graphs, which count inside "
        "the fraction as V1's do (before, its profile_cudagraph_memory returned 0: "
        "v1/worker/gpu/model_runner.py@v0.23.0 to @v0.28.0)",
        "vllm/config/vllm.py@v0.29.0 and @v0.33.0 (use_v2_model_runner, "
        "_get_v2_model_runner_unsupported_features), v1/worker/gpu/model_runner.py@v0.29.0 "
        "(profile_cudagraph_memory, gpu/cudagraph_utils.py)",
        model_runner=ModelRunner.V2,
        v2_estimates_cuda_graphs=True,
    )
    add(
        (0, 31, 0),
        "max_num_seqs joins the capture sizes as a decode size when it is under the largest",
        "vllm/config/vllm.py@v0.31.0 (_set_cudagraph_sizes); absent from vllm/config/vllm.py@v0.30.0",
        capture_sizes=CaptureSizes.WITH_MAX_SEQS,
    )
    add(
        (0, 34, 0),
        "the extensible KV cache, on by default on CUDA where the driver maps virtual memory: the profile "
        "only bounds the cache's address space (no CUDA graph estimate); after the warm-up steps and the "
        "graph capture the cache takes min(fraction x total - memory used since the worker's snapshot, "
        "free memory - max(1 GiB, 0.75 x the transient peak)) less the larger of that peak and torch's "
        "reserve growth, so above 1 - (what the snapshot found used + that margin) / total the fraction "
        "no longer binds; the sizing warm-up asks prompt logprobs (max_logprobs, 20) of one prompt, whose "
        "full-vocabulary logits come 1024 rows at a time; FlashAttention and FlashInfer take the new "
        "64-token default block; the V1 model runner is gone",
        "vllm/config/cache.py@v0.34.0 (enable_extensible_kv_cache, resolved_gpu_memory_utilization, "
        "DEFAULT_BLOCK_SIZE), vllm/config/vllm.py@v0.34.0 (_resolve_extensible_kv_cache), "
        "vllm/v1/worker/extensible_kv_cache.py@v0.34.0 (measure_kv_cache_bytes, "
        "KV_CACHE_MARGIN_FLOOR_BYTES, KV_CACHE_MARGIN_FRACTION), vllm/v1/worker/utils.py@v0.34.0 "
        "(request_memory), vllm/v1/worker/gpu/warmup.py@v0.34.0 (run_kv_cache_sizing_warmup), "
        "vllm/v1/worker/gpu/sample/prompt_logprob.py@v0.34.0 (CHUNK_SIZE), "
        "vllm/v1/worker/gpu/model_runner.py@v0.34.0 (profile_cudagraph_memory)",
        kv_sized_after_warmup=True,
        block_size=64,
    )
    return tuple(table.rows)


RELEASES = _table()
# The extensible KV cache's margin beyond the transient peak (v1/worker/extensible_kv_cache.py@v0.34.0,
# KV_CACHE_MARGIN_FLOOR_BYTES on CUDA and KV_CACHE_MARGIN_FRACTION) and the rows of prompt logits the
# sizing warm-up computes at once (v1/worker/gpu/sample/prompt_logprob.py@v0.34.0, CHUNK_SIZE).
EXTENSIBLE_KV_CACHE_RESERVE = WarmupReserve(GIB, 0.75)
PROMPT_LOGPROB_CHUNK_ROWS = 1024
# The newest release whose source was read: the last row holds up to it.
NEWEST_READ_VERSION = "0.34.0"
# What the project deploys when the spec names no image: its tag is the release an unstated one assumes.
DEFAULT_RELEASE_VERSION = "0.11.0"
# A log that shows the V0 engine but no release: logs are told apart as V0 by the memory-profile lines
# that 0.6.4 introduced, and of 0.6.4 on, 0.6.4 counts the most against the cache (the CUDA context inside
# the fraction outweighs 0.6.5's larger chunks). Earlier releases can count more (0.2.5's reserved
# all-reduce outputs at TP>1, whole-prompt profiles above 32K before 0.5.3); a stated release applies them.
V0_ASSUMED_VERSION = "0.6.4"
V1_ON_ANY_GPU = (0, 10, 2)
DATA_CENTER_BLACKWELL_MAJOR = 10  # is_device_capability_family(100): B200, B300, GB200
LARGE_CEILING_RULES = (CaptureSizes.BLACKWELL_1024, CaptureSizes.WITH_MAX_SEQS)
V1_MIN_COMPUTE_CAPABILITY = 8
FUSED_MOE_CHUNK_TOKENS = 16 * 1024
FP32_BYTES = 4  # VLLM_FUSED_MOE_CHUNK_SIZE's default (vllm/envs.py@v0.14.0)


def release_of(
    version: tuple[int, ...], compute_capability_major: int | None = None, v0: bool = False
) -> Release:
    """The row of `version`, as it runs on a GPU of that compute capability.

    From 0.8 to 0.10.1 the V1 engine falls back to V0 on GPUs older than Ampere
    (vllm/engine/arg_utils.py@v0.10.1.1, _is_v1_supported_oracle; gone in v0.10.2), and for features V1
    lacked; `v0` says a log showed the V0 engine. Such a start runs the V0 engine of its release: V0's
    batching and sort sampler, no hybrid allocator.
    """
    rows = [row for row in RELEASES if row.first <= version]
    release = rows[-1] if rows else RELEASES[0]
    pre_ampere = compute_capability_major is not None and compute_capability_major < V1_MIN_COMPUTE_CAPABILITY
    if not release.v0_engine and (v0 or (pre_ampere and version < V1_ON_ANY_GPU)):
        last_v0 = [row for row in RELEASES if row.v0_engine][-1]
        return replace(
            release,
            changes=f"the V0 engine of {release.version}",
            v0_engine=True,
            batching=last_v0.batching,
            sampler=Sampler.SORT,
            flashinfer_sampler=False,
            hybrid_kv_cache=False,
            kv_tokens_report=KvTokensReport.GROUP_BLOCKS,
            encoder_batch=EncoderBatch.NOT_PROFILED,
            cuda_graphs_inside_fraction=False,
            mlp_peaks=last_v0.mlp_peaks,
        )
    return release


# The model types vLLM runs through llama.py's layers (model_executor/models/registry.py@v0.6.4; phi3.py
# subclasses LlamaForCausalLM).
LLAMA_FILE_FAMILIES = frozenset({"llama", "mistral", "phi3", "aquila", "internlm"})
# Releases that read used memory after the profile without emptying the cache: what the caching allocator
# keeps reserved counts (vllm/worker/worker.py@v0.2.5 to @v0.6.3, profile_num_available_blocks).
RESERVED_COUNTED = (Accounting.USED_MEMORY, Accounting.FREE_DROP)


@functools.lru_cache(maxsize=256)
def _replay_v0_forward(
    arch: ModelArchitecture, tensor_parallel: int, tokens: int, element: int, recorded: bool
) -> ForwardReplay:
    """V0's profile forward through a dense model, tensor by tensor as its Python frames hold them
    (LlamaModel, LlamaDecoderLayer, LlamaAttention and LlamaMLP.forward in
    vllm/model_executor/models/llama.py@v0.2.5 to @v0.6.3.post1), replayed through PyTorch's caching
    allocator (sizing/allocator.py). RMSNorm with a residual works in place (fused_add_rms_norm); only the
    first layer's input norm writes a new tensor, and the embedding's output stays as the residual.
    `recorded`: the embedding's and each row-parallel layer's all-reduced outputs wait on NCCL's stream
    (0.2.5 at TP > 1): the CPU runs ahead of the GPU through the profile, so they are never reused, the
    bound. The caching allocator gives each request the smallest free block that holds it and splits it,
    so an output may take, and keep, part of a larger freed block."""
    pool = CachingAllocator()
    hidden = arch.hidden_size
    query = arch.num_attention_heads // tensor_parallel * arch.head_dim
    key_value = max(1, arch.num_kv_heads // tensor_parallel) * arch.head_dim
    intermediate = arch.intermediate_size // tensor_parallel

    def tensor(name: str, width: int) -> None:
        pool.allocate(name, tokens * width * element)

    def layer(index: int) -> None:
        if index == 0:
            tensor("normed", hidden)
        tensor("qkv", query + 2 * key_value)
        tensor("attn", query)
        tensor("attn_output", hidden)  # o_proj, all-reduced
        pool.free("attn")
        pool.free("qkv")
        if index == 0:
            pool.free("normed")  # the layer rebinds its hidden states to the attention's output
        tensor("gate_up", 2 * intermediate)
        tensor("act", intermediate)
        tensor("mlp_output", hidden)  # down_proj, all-reduced
        pool.free("act")
        pool.free("gate_up")
        pool.free("attn_output", recorded)  # the layer rebinds its hidden states to the MLP's output
        if index == 0:
            pool.rename("hidden", "residual")
        else:
            pool.free("hidden", recorded)  # the loop rebinds its hidden states
        pool.rename("mlp_output", "hidden")

    tensor("hidden", hidden)  # the embedding's output, all-reduced
    skipped = replay_layers(pool, layer, arch.num_layers)
    return ForwardReplay(pool.peak_reserved_bytes + skipped, pool.peak_allocated_bytes)


@functools.lru_cache(maxsize=1024)  # every GPU type and every plan of a model asks for the same few
def _weight_rounding_bytes(
    arch: ModelArchitecture,
    weights: WeightFormat,
    tensor_parallel: int,
    stage: PipelineStage,
    max_split_bytes: int | None,
) -> int:
    sizes = weight_tensor_sizes(arch, weights, tensor_parallel, stage)
    return sum((held_block_bytes(size, max_split_bytes) - size) * count for size, count in sizes.items())


class VllmModel(EngineModel):
    """vLLM: `--gpu-memory-utilization` x CUDA total = weights + profiled peak + non-torch + KV cache.

    The release row decides the profile's batch, the sampler, what counts as non-torch and the KV layout.
    With TP, V0 gathers the logits to the driver alone, which samples
    (model_executor/layers/logits_processor.py@v0.7.2, _gather_logits), and the engine keeps the fewest
    blocks any rank found (executor/executor_base.py@v0.7.2): the driver's profile, sampler included,
    decides, though the other ranks' logs show no sampler term.
    Non-torch growth at TP=1 is the release's (0.13 GiB, 0.26 from 0.18.0), +0.28 GiB of NCCL and all-reduce
    buffers at TP>1. The GPU's CUDA context (sizing/cuda_context.py) and graphs (~0.5 GiB for the default
    capture sizes) stay outside the fraction unless the release counts them.
    """

    engine = Engine.VLLM

    def __init__(
        self,
        release: Release,
        flashinfer_installed: bool | None = None,
        offline: bool = False,
        compute_capability_major: int | None = None,
        eager: bool = False,
        compile_cached: bool = False,
    ) -> None:
        self.release = release
        self.offline = offline
        self.eager = eager
        # --enforce-eager compiles nothing (vllm/config/vllm.py@v0.13.0: -O0), nor does a cache hit.
        self.compiles = not (eager or compile_cached)
        self.compute_capability_major = compute_capability_major
        self.sliding_window_paged = release.hybrid_kv_cache
        self.larger_group_below = release.larger_group_below
        # --enforce-eager captures no graphs, so the profile estimates none either (gpu_worker.py@v0.20.0,
        # determine_available_memory: cudagraph_mode NONE).
        self.cuda_graphs_inside_fraction = release.cuda_graphs_inside_fraction and not eager
        self.cuda_graphs_follow_batch = self.cuda_graphs_inside_fraction  # the estimate's capture sizes
        # An unknown install takes the path that leaves the smaller KV cache: not FlashInfer.
        sampler = (
            Sampler.FLASHINFER if release.flashinfer_sampler and flashinfer_installed else release.sampler
        )
        self.sampler = sampler
        self.sampler_bytes_per_logit = sampler.value
        accounting = release.accounting
        self.non_torch_bytes = release.non_torch_bytes
        if eager:  # no capture path: what 0.18.0 on counts for it (CAPTURE_PATH_NON_TORCH_BYTES) is not there
            self.non_torch_bytes = min(self.non_torch_bytes, EngineModel.non_torch_bytes)
        if accounting is Accounting.ALLOCATED_PEAK:
            self.non_torch_bytes = self.non_torch_bytes_tensor_parallel = 0
        self.cuda_context_inside_fraction = accounting in (Accounting.USED_MEMORY, Accounting.CONTEXT_INSIDE)
        self.default_block_size = release.block_size
        if release.kv_sized_after_warmup:
            self.warmup_reserve = EXTENSIBLE_KV_CACHE_RESERVE

    def reported_kv_tokens(
        self,
        layout: KvLayout,
        kv_budget_bytes: int,
        max_model_len: int,
        max_batched_tokens: int,
        arch: ModelArchitecture | None = None,
    ) -> int:
        if self.release.kv_tokens_report is KvTokensReport.CONCURRENCY_X_LENGTH:
            return layout.context_tokens(kv_budget_bytes, max_model_len, max_batched_tokens)
        return layout.capacity_tokens(kv_budget_bytes)

    def cuda_graph_profile(
        self, arch: ModelArchitecture, max_num_batched_tokens: int, max_num_seqs: int | None
    ) -> CudaGraphProfile:
        """The graphs the estimate's profile counts for a start with `max_num_seqs` (None: any, so the
        most: the count stops growing at half the largest ceiling). Both modes are assumed, as the default
        FULL_AND_PIECEWISE captures them where the attention backend supports FULL decode graphs (fewer
        graphs where it does not)."""
        rule = self.release.capture_sizes
        blackwell = self.compute_capability_major in (None, DATA_CENTER_BLACKWELL_MAJOR)
        large = arch.family == "gpt_oss" or (rule in LARGE_CEILING_RULES and blackwell)
        ceiling = LARGE_CAPTURE_CEILING if large else CAPTURE_CEILING
        return _capture_profile(rule, ceiling, max_num_seqs, max_num_batched_tokens)

    def flash_attention_runs(self, arch: ModelArchitecture, kv_cache_fp8: bool) -> bool:
        """Whether vLLM picks FlashAttention: first on compute capability 8 and 9, where it takes the head
        size (a multiple of 8, at most 256) and the KV dtype (fp8 only with FlashAttention 3, on 9); else
        FlashInfer comes next (vllm/platforms/cuda.py@v0.20.0, _get_backend_priorities;
        vllm/v1/attention/backends/flash_attn.py@v0.20.0, supports_head_size, supports_kv_cache_dtype).
        MLA takes FlashAttention's MLA backend on the same GPUs."""
        major = self.compute_capability_major
        if major not in FLASH_ATTN_FIRST_MAJORS:
            return False
        if arch.is_mla:
            return True
        head_fits = arch.head_dim % 8 == 0 and arch.head_dim <= 256
        return head_fits and (not kv_cache_fp8 or major == HOPPER_MAJOR)

    def cuda_graph_bytes_for(
        self,
        arch: ModelArchitecture,
        tensor_parallel: int,
        layers: int,
        forward_bytes_per_token: int,
        max_num_batched_tokens: int,
        max_num_seqs: int | None,
        kv_cache_fp8: bool = False,
    ) -> int:
        """From 0.20.0 the profile's estimate (CudaGraphProfile), as a bound: the first FULL capture holds
        FlashAttention's accumulators, the source's own arithmetic (32 splits x tokens x heads per GPU x
        (head size + 1) x 4 bytes; MLA's head size is its latent), or FlashInfer's workspace where that
        backend may run; the forward's tensors at the largest size bound the first PIECEWISE capture; each
        further graph is bounded by the driver's figure per layer (not in the source: see
        DENSE_GRAPH_BYTES_PER_LAYER). Not covered: a second sample that opens a fresh allocator segment,
        which the estimate then multiplies by every further graph (see the README). Before 0.20.0 the graphs
        sit outside the fraction and only need room there: the flat figure.

        Under --enforce-eager there are no graphs; what stays, outside the fraction, is FlashInfer's
        workspace where that backend may run: the profile's dummy run builds no attention metadata
        (v1/worker/gpu_model_runner.py@v0.13.0: profile_run calls _dummy_run without force_attention, and
        eager mode dispatches no FULL graph), so the first request allocates it, after the
        KV cache."""
        if self.eager:
            return 0 if self.flash_attention_runs(arch, kv_cache_fp8) else FLASHINFER_WORKSPACE_BYTES
        if not self.release.cuda_graphs_inside_fraction:
            return self.cuda_graph_bytes
        profile = self.cuda_graph_profile(arch, max_num_batched_tokens, max_num_seqs)
        head_size = arch.kv_lora_rank if arch.is_mla else arch.head_dim
        heads = ceil_div(arch.num_attention_heads, tensor_parallel)
        first_full = (
            FLASH_ATTN_SPLITS_FOR_CUDA_GRAPH
            * profile.largest_full_tokens
            * heads
            * (head_size + 1)
            * FP32_BYTES
        )
        if not self.flash_attention_runs(arch, kv_cache_fp8):
            first_full = max(first_full, FLASHINFER_WORKSPACE_BYTES)
        per_layer = MOE_GRAPH_BYTES_PER_LAYER if arch.is_moe else DENSE_GRAPH_BYTES_PER_LAYER
        steps = max(ceil_div(layers * per_layer, GRAPH_STEP_BYTES), 2)
        return profile.bound_bytes(first_full, forward_bytes_per_token, steps * GRAPH_STEP_BYTES)

    def cuda_graphs_inside(self, arch: ModelArchitecture, weights: WeightFormat) -> bool:
        """From 0.20.0 the profile's CUDA graph estimate counts inside the fraction, but the V2 model runner
        estimated nothing before 0.29.0 (v1/worker/gpu/model_runner.py@v0.23.0 to @v0.28.0:
        profile_cudagraph_memory returns 0): its graphs are captured after the KV cache, outside."""
        if not self.cuda_graphs_inside_fraction:
            return False
        return self.release.v2_estimates_cuda_graphs or not self.runs_v2_model_runner(arch, weights)

    def runs_v2_model_runner(self, arch: ModelArchitecture, weights: WeightFormat) -> bool:
        """Whether the release serves this model on the V2 model runner by default."""
        runner, listed = self.release.model_runner, arch.family in self.release.v2_model_types
        if self.release.v0_engine or runner is ModelRunner.V1:
            return False
        if runner is ModelRunner.V2_LISTED_DENSE:
            return listed and not arch.is_moe and weights.quantization is None
        if runner is ModelRunner.V2_LISTED:
            return listed
        if runner is ModelRunner.V2_LISTED_OR_DENSE:
            return listed or not arch.is_moe
        return True

    def sampler_logit_bytes(self, arch: ModelArchitecture, weights: WeightFormat) -> float:
        """V1's sampler by path; V2's profile holds the logits in the compute dtype (and, before 0.26.0,
        their fp32 copy): its dummy requests set no sampling parameters, so no top-k/top-p kernel runs and
        Gumbel sampling keeps a max and an index per 1024 logits (v1/worker/gpu/sample/gumbel.py@v0.29.0)."""
        if not self.runs_v2_model_runner(arch, weights):
            return self.sampler_bytes_per_logit
        return weights.compute_bytes + (FP32_BYTES if self.release.v2_sampler_copies_fp32 else 0)

    def sampler_program_buffer(self, arch: ModelArchitecture, weights: WeightFormat) -> ProgramBuffer:
        """Triton top-k/top-p's cached scratch, where the release has it and the install samples with
        Triton (FlashInfer's kernels keep none): a row of fp32 logits, the whole vocabulary (every TP
        rank samples the gathered logits), per program. V2's profile runs no top-k/top-p."""
        if self.sampler is not Sampler.TRITON or not self.release.topk_topp_program_buffer:
            return NO_PROGRAM_BUFFER
        if self.runs_v2_model_runner(arch, weights):
            return NO_PROGRAM_BUFFER
        return ProgramBuffer(self.sm_count, arch.vocab_size * FP32_BYTES)

    def mla_head_size(self, arch: ModelArchitecture) -> int | None:
        cache = self.release.mla_cache
        quant = arch.quantization
        if self.release.mla_only_unquantized_or_fp8 and quant is not None and quant.method != "fp8":
            cache = MlaCache.QK_HEADS
        if cache in (MlaCache.LATENT, MlaCache.LATENT_ALIGNED):
            return None
        return 256 if cache is MlaCache.PADDED_HEADS else arch.qk_nope_head_dim + arch.qk_rope_head_dim

    def mla_latent_alignment(self, arch: ModelArchitecture, compute_bytes: int) -> int:
        """V0's cache engine in 0.7.2 and 0.7.3 rounds each MLA cache entry up to 256 bytes of the model's
        dtype (VLLM_CUDA_MEM_ALIGN_KV_CACHE, on by default), and sizes its blocks so: DeepSeek's 576-wide
        latent takes 640 elements, 11% more per token."""
        if self.release.mla_cache is not MlaCache.LATENT_ALIGNED or self.mla_head_size(arch) is not None:
            return 1
        return ALIGNED_CACHE_ENTRY_BYTES // compute_bytes

    def mlp_peaks(self, arch: ModelArchitecture) -> tuple[tuple[int, int], ...]:
        """The release's figures hold for llama.py's code; V0's other model files (qwen2.py, gemma2.py,
        deepseek_v2.py, ... @v0.6.4 to @v0.8.1) keep gate_up until the down projection returns, as
        llama.py did before 0.6.4."""
        if self.release.v0_engine and arch.family not in LLAMA_FILE_FAMILIES:
            return RELEASES[0].mlp_peaks
        return self.release.mlp_peaks

    def reserved_profile_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """What the profile leaves reserved beyond its live peak, where the release counts used memory
        after it (0.2.5 to 0.6.3: no empty_cache before mem_get_info): the blocks no later tensor fits,
        and in 0.2.5 at TP > 1 the all-reduced outputs, which wait on NCCL's stream (see
        `_replay_v0_forward`). MoE layers are not replayed: there only the recorded outputs count, two
        per layer."""
        if not self.release.v0_engine or self.release.accounting not in RESERVED_COUNTED:
            return 0
        recorded = tensor_parallel > 1 and self.release.allreduce_outputs_reserved
        element = weights.compute_bytes
        if arch.is_moe:
            return 2 * arch.num_layers * tokens * arch.hidden_size * element * recorded
        forward = _replay_v0_forward(arch, tensor_parallel, tokens, element, recorded)
        return forward.reserved_bytes - forward.live_bytes

    def encoder_profile(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> EncoderProfile:
        """The V1 profile's encoder run (gpu_model_runner.py profile_run, v0.8.0 to v0.33.0): dummy images
        of the largest size, as many as the encoder budget holds (max(max_num_batched_tokens, one image's
        embeddings) over one image's embeddings; vllm/multimodal/encoder_budget.py@v0.19.0). Their pixels,
        in the compute dtype (multimodal/processing/context.py@v0.19.0, _postprocess_output), and the
        embeddings the projector makes of them stay referenced until profile_run returns, through the
        text model's dummy run and sampler. The decoder's bound on the count (max_num_seqs x images per
        prompt) is left out: it binds only for tiny batches, so the count is an upper bound.

        The encoder's own peak, with its pixels, is at the MLP of a layer (SiglipEncoderLayer and
        SiglipMLP.forward in model_executor/models/siglip.py@v0.19.0): the residual, the normed input,
        fc1's output and its activation, over every patch, with TP splitting the intermediate; a gated MLP
        holds gate_up's two intermediate-wide halves and their product (Qwen2_5_VisionMLP in
        qwen2_5_vl.py@v0.19.1). Qwen-VL's largest dummy item is one image at the official processor's size
        while max_model_len is under twice its embeddings; from there a video of up to 14 such frames (16
        before 0.11.0, qwen2_vl.py _MAX_FRAMES_PER_VIDEO) outgrows it
        (Qwen2VLProcessingInfo.get_num_frames_with_most_features), which is not modelled
        (`model_assumptions`)."""
        vision = arch.vision_encoder
        batch = self.release.encoder_batch
        if vision is None or batch is EncoderBatch.NOT_PROFILED:
            return NO_ENCODER_PROFILE
        budget = max(tokens, vision.image_tokens)
        if batch is EncoderBatch.ROUNDED_UP:
            images = ceil_div(budget, vision.image_tokens)
        else:
            images = budget // vision.image_tokens
        element = weights.compute_bytes
        pixels = vision.channels * vision.image_size**2 * element
        embeddings = vision.image_tokens * arch.hidden_size * element
        copies = 3 if vision.gated_mlp else 2  # intermediate-wide tensors alive at the MLP's peak
        mlp = 2 * vision.hidden_size + copies * ceil_div(vision.intermediate_size, tensor_parallel)
        peak = images * (pixels + vision.patches_per_image * mlp * element)
        return EncoderProfile(peak_bytes=peak, held_bytes=images * (pixels + embeddings))

    def model_assumptions(self, arch: ModelArchitecture) -> tuple[str, ...]:
        """A multimodal checkpoint whose encoder profile is not modelled says so: dynamic-resolution towers
        other than Qwen-VL's (Pixtral), whose largest dummy image is the processor's setting, not
        config.json's, and every tower under V0, whose dummy sequences carry the images. Qwen-VL's is
        modelled at the official processor's image, which the plan says."""
        vision = arch.vision_encoder
        if not arch.is_multimodal:
            return ()
        if vision is None or self.release.encoder_batch is EncoderBatch.NOT_PROFILED:
            return (
                f"vLLM runs {arch.name}'s vision encoder on its largest dummy images before sizing the KV "
                "cache, at a peak not modelled, so the cache can come out smaller than planned (the "
                "encoder's weights are counted)",
            )
        if vision.dynamic_resolution:
            return (
                f"vLLM's profile encodes {arch.name}'s largest dummy image at the official processor's "
                f"size ({vision.image_tokens:,} embeddings); a checkpoint whose processor allows larger "
                f"images, or a max_model_len of {2 * vision.image_tokens:,} or more, where its dummy video "
                "of up to 14 such frames (16 before 0.11) is larger, leaves less KV cache than planned",
            )
        return ()

    def compile_profile_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """The embedding table's random copy and its output's, for the profiled tokens, where the release
        benchmarks Inductor's kernels during a cold compile (vllm/config/compilation.py@v0.11.1 on).

        The plan counts the cold start, the one a new pod makes. A start that loads an earlier compile
        from its cache (the log: "Directly load the compiled graph(s)"; `compiles` false) benchmarks
        nothing and allocates neither (vllm/compilation/backends.py@v0.19.1, CompilerManager.compile: a
        cache hit returns the loaded graph before Inductor compiles). A multimodal model's runner
        looks its embeddings up outside the compiled graph and passes them in
        (vllm/v1/worker/gpu_model_runner.py@v0.19.0, _preprocess; v1/worker/gpu/model_runner.py@v0.29.0,
        uses_inputs_embeds), so its graph has no lookup to time. The plan drops the copy where it models that
        encoder's own profile (gemma-3, Qwen-VL), which then bounds the activation from below; where it does
        not (Pixtral: `model_assumptions` says so), the copy stays counted, smaller than the encoder peak it
        stands beside, rather than leave that activation at the text forward alone. A public 0.31.0 start of
        Llama-3.1-8B on an A100 80GB, not a calibration row, prints 1.44 GiB of peak activation where its
        forward and sampler need under 0.3 GiB: this copy, 0.99 GiB at 2048 tokens, and the CUDA graph
        estimate."""
        if not self.compiles or not self.release.compile_copies_embedding or arch.vision_encoder is not None:
            return 0
        vocab = ceil_div(arch.vocab_size, tensor_parallel)
        return (vocab + tokens) * arch.hidden_size * weights.compute_bytes

    def warmup_step_bytes(self, arch: ModelArchitecture, weights: WeightFormat, tokens: int) -> int:
        """From 0.34.0 the KV cache is sized after a warm-up step that asks prompt logprobs (max_logprobs,
        20 by default) of one prompt of up to max_num_batched_tokens tokens, whose logits come
        PROMPT_LOGPROB_CHUNK_ROWS rows of the whole vocabulary at a time (every tensor-parallel rank
        gathers them): counted in fp32, the widest a logits processor returns."""
        if not self.release.kv_sized_after_warmup:
            return 0
        return min(PROMPT_LOGPROB_CHUNK_ROWS, tokens) * arch.vocab_size * FP32_BYTES

    def stage_input_bytes(self, arch: ModelArchitecture, weights: WeightFormat, tokens: int) -> int:
        """V1's runners give a stage after the first a persistent buffer for the activations it receives,
        hidden states and residual for max_num_batched_tokens rows in the compute dtype (the decoder's
        make_empty_intermediate_tensors): the V1 runner allocates it in the profile's dummy run
        (v1/worker/gpu_model_runner.py@v0.19.0, _dummy_run), the V2 runner while loading the model
        (v1/worker/gpu/model_runner.py@v0.29.0, load_model), counted from 0.27.0 on as memory consumed
        since the worker's snapshot (utils/mem_utils.py@v0.27.0, memory_profiling). V0 is not modelled."""
        if self.release.v0_engine:
            return 0
        return 2 * tokens * arch.hidden_size * weights.compute_bytes

    def loaded_buffer_bytes(self, arch: ModelArchitecture, weights: WeightFormat) -> int:
        """get_rope's cos/sin tables: one per distinct rope configuration, a row of rotary_dim per position,
        in the dtype the model is built in (rotary_embedding.py@v0.6.5, rotary_embedding/base.py@v0.19.0:
        cache.to(dtype), a non-persistent buffer), so "Model loading took" counts them. gemma-3's global
        layers stretch 131072 positions 8 times: 0.25 GiB in bf16. gpt-oss builds its table in fp32
        (models/gpt_oss.py@v0.19.0) and DeepSeek's scaling rope keeps fp32 too: each a few MiB more."""
        return sum(arch.rotary_table_positions) * arch.rotary_dim * weights.compute_bytes

    def derived_weight_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, stage: PipelineStage
    ) -> int:
        """V0's MLA decode absorbs the key and value up-projections (0.7.1 to 0.7.3): per layer and GPU,
        W_Q_UK (q_lora_rank, or hidden without query compression, x heads x kv_lora_rank), W_UV_O (heads x
        kv_lora_rank x hidden), both requantized to fp8 for an fp8 checkpoint, and W_QR (the same input x
        heads x qk_rope_head_dim) in the compute dtype; the model's load counts them. DeepSeek-V2-Lite at
        TP 8 in fp16: 2 x 2048 x 1024 x 2 + 2048 x 128 x 2 bytes = 8.5 MiB a layer, 0.22 GiB over 27."""
        if not (arch.is_mla and self.release.mla_absorbed_weights and self.mla_head_size(arch) is None):
            return 0
        heads = arch.num_attention_heads // tensor_parallel
        query_input = arch.q_lora_rank or arch.hidden_size
        quant = weights.quantization
        absorbed_bytes = 1 if quant is not None and quant.method == "fp8" else weights.compute_bytes
        tensors = (
            query_input * heads * arch.kv_lora_rank * absorbed_bytes,  # W_Q_UK
            heads * arch.kv_lora_rank * arch.hidden_size * absorbed_bytes,  # W_UV_O
            query_input * heads * arch.qk_rope_head_dim * weights.compute_bytes,  # W_QR
        )
        split = self.release.load_max_split_bytes
        return sum(held_block_bytes(size, split) for size in tensors) * stage.layers

    def weight_rounding_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, stage: PipelineStage
    ) -> int:
        """ "Model loading took" is torch's allocated bytes, which count each weight's whole allocator block:
        a tensor of 10 MiB or more rounded up to 2 MiB unless over 1 MiB is left to split off, and from
        0.21.0 (max_split_size_mb 20 while loading) always from 20 MiB on. Checkpoint shapes are mostly
        multiples of 2 MiB in 16 bits; 4-bit packing halves them (Qwen3-14B-AWQ's gate_up_proj 85 MiB,
        down_proj 42.5 MiB: 0.12 GiB over 40 layers). Blocks a repack reuses can only be larger, up to
        20 MiB (get_free_block), so this is the least the figure counts."""
        max_split = self.release.load_max_split_bytes
        return _weight_rounding_bytes(arch, weights, tensor_parallel, stage, max_split)

    def persistent_workspace_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """TritonExperts' two workspaces for the profiled tokens (chunked at VLLM_FUSED_MOE_CHUNK_SIZE),
        where the release's workspace manager keeps them. MXFP4 experts call OAI's Triton kernels directly,
        outside the modular kernel and its workspaces (quantization/mxfp4.py@v0.14.0, apply)."""
        quant = weights.quantization
        if not (arch.is_moe and self.release.moe_workspace_persists) or (quant and quant.method == "mxfp4"):
            return 0
        rows = min(tokens, FUSED_MOE_CHUNK_TOKENS) * arch.num_experts_per_token
        intermediate, hidden = ceil_div(arch.moe_intermediate_size, tensor_parallel), arch.hidden_size
        width = max(intermediate, hidden) + max(2 * intermediate, hidden)
        return rows * width * weights.compute_bytes

    def default_scheduling(
        self,
        cuda_total_bytes: int,
        gpu: GpuType,
        max_model_len: int,
        arch: ModelArchitecture | None = None,
        tensor_parallel: int = 1,
        fraction: float = 1.0,
    ) -> Scheduling:
        """The batch limits the release picks on this GPU when the command line sets none."""
        batching, block = self.release.batching, self.default_block_size
        if self.release.v0_engine:
            if max_model_len > 32768 and batching is Batching.CHUNKED_512_ABOVE_32K:
                return Scheduling(256, 512, block)
            if max_model_len > 32768 and batching is Batching.CHUNKED_2048_ABOVE_32K:
                return Scheduling(256, 2048, block)
            return Scheduling(256, max(max_model_len, 2048), block)
        name = gpu.name.lower()
        if batching is Batching.V1_160GIB_TIER and cuda_total_bytes >= 160 * GIB:
            return Scheduling(1024, 16384, block)
        if batching is Batching.V1_H100_BY_NAME:
            large = "h100" in name or "h200" in name
        else:
            large = cuda_total_bytes >= 70 * GIB and (batching is Batching.V1_70GIB or "a100" not in name)
        # The offline class (UsageContext.LLM_CLASS) batches 16384 tokens on the larger tier and 8192 on
        # the smaller, in every V1 release (vllm/engine/arg_utils.py@v0.8.0, v0.8.5, v0.9.1, v0.28.0).
        tokens = (16384 if large else 8192) if self.offline else (8192 if large else 2048)
        return Scheduling(1024 if large else 256, tokens, block)

    def resident_weights(self, gpu: GpuType, weights: WeightFormat) -> WeightFormat:
        """Symmetric GPTQ on Marlin keeps no zero points: 0.5 bytes per 128 weights fewer at group 128.
        A GPU known only by its memory keeps them, since older ones run GPTQ's own kernels."""
        quant = weights.quantization
        if quant is None or not (self.release.gptq_marlin and quant.method == "gptq" and quant.symmetric):
            return weights
        if gpu.name == UNKNOWN_GPU or gpu.compute_capability_major < MARLIN_MIN_COMPUTE_CAPABILITY:
            return weights
        return replace(weights, quantization=replace(quant, zero_point_bits=0))

    def expert_padding(self, gpu: GpuType, weights: WeightFormat) -> ExpertPadding | None:
        """MXFP4 experts: Blackwell's FlashInfer kernels pad both sizes to 256; Hopper's layout is the
        release's (Marlin until the wheel carries triton_kernels); older GPUs run Marlin
        (vllm/model_executor/layers/quantization/mxfp4.py@v0.11.0 and later, get_mxfp4_backend)."""
        if weights.quantization is None or weights.quantization.method != "mxfp4":
            return None
        if gpu.compute_capability_major >= 10:
            return ExpertPadding(256, 256, bias_bytes=FP32_BIASES)
        if gpu.compute_capability_major == 9:
            return self.release.mxfp4_experts_on_hopper
        return MARLIN_MXFP4

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"{FLAGS.model}={launch.model}",
            f"{FLAGS.tensor_parallel}={launch.tensor_parallel}",
            f"{FLAGS.max_model_len}={launch.max_model_len}",
            f"{FLAGS.max_num_seqs}={launch.max_num_seqs}",
            f"{FLAGS.memory_fraction}={format_fraction(launch.memory_fraction)}",
            f"{FLAGS.dtype}={TORCH_DTYPE_NAMES[launch.weights.compute_dtype]}",
            f"{FLAGS.kv_cache_dtype}={'fp8' if launch.kv_cache_fp8 else 'auto'}",
        ]
        if launch.pipeline_parallel > 1:
            args.append(f"{FLAGS.pipeline_parallel}={launch.pipeline_parallel}")
        quant = launch.weights.quantization
        if quant is not None and quant.method == "fp8":
            args.append(f"{FLAGS.quantization}=fp8")
        if launch.max_num_batched_tokens is not None:
            args.append(f"{FLAGS.max_num_batched_tokens}={launch.max_num_batched_tokens}")
        if launch.block_size_tokens is not None:
            args.append(f"{FLAGS.block_size}={launch.block_size_tokens}")
        if launch.eager:
            args.append("--enforce-eager")
        return args


def _model(build: EngineBuild, compute_capability_major: int | None) -> EngineModel:
    """The release a build runs, from its stated version or image tag; unstated, an assumed one, said."""
    assumptions = []
    stated = build.version or ""
    v0 = re.search(r"\bV0\b", stated) is not None
    version = parse_version(stated)
    if version is None:
        if v0:
            assumed, why = V0_ASSUMED_VERSION, "the V0 release that counts the most against the KV cache"
        elif "latest" in stated.lower():
            assumed, why = NEWEST_READ_VERSION, "the newest known"
        else:
            assumed, why = DEFAULT_RELEASE_VERSION, "the default image's release"
        version = parse_version(assumed)
        assert version is not None
        said = f" ({stated!r})" if stated else ""
        assumptions.append(f"vLLM release not stated{said}: the rules of {assumed}, {why}, apply")
    release = release_of(version, compute_capability_major, v0)
    flashinfer = (
        build.flashinfer if build.flashinfer is not None else DEFINITION.is_official_image(build.image)
    )
    model = VllmModel(
        release,
        flashinfer_installed=flashinfer,
        offline=build.offline,
        compute_capability_major=compute_capability_major,
        eager=build.eager,
        compile_cached=build.compile_cached,
    )
    if model.cuda_graphs_inside_fraction:
        assumptions.append(
            "CUDA graphs: vLLM estimates their memory while profiling and counts it inside the fraction"
            + (
                ""
                if release.v2_estimates_cuda_graphs
                else " (not on the V2 model runner, which estimates none)"
            )
            + "; the plan counts a bound on that estimate (attention buffers and the forward from the "
            "source, the driver's cost per graph from public logs), not the figure itself"
        )
    if release.compile_copies_embedding and model.compiles:
        assumptions.append(
            "torch.compile: a cold compile, as a new pod makes, whose kernel timing copies a text model's "
            "embedding table inside the profile; a start that loads its compile from a cache kept across "
            "restarts leaves that much more memory to the KV cache"
        )
    if release.flashinfer_sampler and build.flashinfer is None and not flashinfer:
        assumptions.append(
            "not known whether the install samples with FlashInfer (the vllm/vllm-openai image does): "
            f"the {release.sampler.name.lower()} sampler's larger profile is assumed"
        )
    model.release_label = version_label(version) + (" (V0 engine)" if release.v0_engine else "")
    model.assumptions = (
        *beyond_newest_read("vLLM", model.release_label, version, NEWEST_READ_VERSION),
        *assumptions,
    )
    return model


DEFINITION = EngineDefinition(Engine.VLLM, "vLLM", RUNTIME, FLAGS, _model, COMMAND_LINE)
