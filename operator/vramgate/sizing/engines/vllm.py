"""vLLM: its memory model by release, its official image, and the flags a plan sets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vramgate.sizing.catalog import GpuType
from vramgate.sizing.engines.base import (
    TORCH_DTYPE_NAMES,
    Engine,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    Launch,
    PlanFlags,
    Scheduling,
    format_fraction,
)
from vramgate.sizing.memory import ExpertPadding, WeightFormat
from vramgate.sizing.units import GIB

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
# The module path, not `vllm serve`: it takes --model in every release.
RUNTIME = EngineRuntime(
    image="vllm/vllm-openai:v0.11.0",
    command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
    port=8000,
    port_flag="--port",
    host_flag=None,
)


@dataclass(frozen=True)
class VllmGeneration:
    """A span of vLLM releases whose start-up memory profile behaves alike."""

    name: str
    first_version: tuple[int, int, int]
    v0_engine: bool
    sampler_bytes_per_logit: float
    cuda_graphs_inside_fraction: bool
    hybrid_kv_cache: bool  # sliding-window layers keep only their window (the hybrid allocator, 0.10+)
    description: str


VLLM_GENERATIONS = (
    VllmGeneration(
        "v0",
        (0, 0, 0),
        True,
        38.4,
        False,
        False,
        "V0 engine: PyTorch sort for top-k/top-p, no chunked prefill",
    ),
    VllmGeneration(
        "v1-flashinfer-sampler",
        (0, 8, 0),
        False,
        10.0,
        False,
        False,
        "V1 sampling with FlashInfer (default when installed, as in the image); sliding layers kept whole",
    ),
    VllmGeneration(
        "v1-hybrid-kv",
        (0, 10, 0),
        False,
        10.0,
        False,
        True,
        "V1 with FlashInfer sampling and the hybrid KV allocator (sliding layers keep their window)",
    ),
    VllmGeneration(
        "v1-sort-sampler",
        (0, 11, 1),
        False,
        38.4,
        False,
        True,
        "V1 engine after FlashInfer sampling became opt-in: top-k/top-p sort the fp32 logits",
    ),
    VllmGeneration(
        "v1-graphs-in-budget",
        (0, 21, 0),
        False,
        12.0,
        True,
        True,
        "CUDA graphs estimated into the fraction; light top-k/top-p (read from source, uncalibrated)",
    ),
)
DEFAULT_VLLM_GENERATION = VLLM_GENERATIONS[3]
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


# Before 0.10 the V1 engine needed compute capability 8.0; older GPUs (T4, V100) ran the V0 engine.
V1_ON_ANY_GPU = (0, 10, 0)
V1_MIN_COMPUTE_CAPABILITY = 8


def vllm_generation(version: str | None, compute_capability_major: int | None = None) -> VllmGeneration:
    """The generation of a vLLM version string ("0.10.1.1", "v0.11.0", "... V0 ...") on a GPU.

    Unknown or unparseable versions, and source builds without a tag ("0.1.devN"), get the default.
    """
    generation = _generation_of(version)
    pre_ampere = compute_capability_major is not None and compute_capability_major < V1_MIN_COMPUTE_CAPABILITY
    if pre_ampere and not generation.v0_engine and generation.first_version < V1_ON_ANY_GPU:
        return VLLM_GENERATIONS[0]
    return generation


def _generation_of(version: str | None) -> VllmGeneration:
    if not version:
        return DEFAULT_VLLM_GENERATION
    if re.search(r"\bV0\b", version):
        return VLLM_GENERATIONS[0]
    match = _VERSION.search(version)
    if match is None:
        return DEFAULT_VLLM_GENERATION
    number = (int(match[1]), int(match[2]), int(match[3] or 0))
    if number < (0, 2, 0) and "dev" in version:
        return DEFAULT_VLLM_GENERATION
    return [g for g in VLLM_GENERATIONS if g.first_version <= number][-1]


class VllmModel(EngineModel):
    """vLLM: `--gpu-memory-utilization` x CUDA total = weights + profiled peak + non-torch + KV cache.

    Calibrated on the shared start-up logs: non-torch 0.13 GiB at TP=1 (median of R03/R19/R20/R22/R35),
    +0.28 GiB of NCCL and all-reduce buffers at TP>1 (R04 0.30, R24 0.54). The profile run's sampler keeps
    ~38 bytes per logit when top-k/top-p sort the fp32 logits (R19/R20/R22: 38.3-38.4 B x 1024 seqs x
    vocab) and ~10 with FlashInfer's sampler (R09/R10). CUDA context (~0.6 GiB) and graphs (~0.5 GiB for
    the default capture sizes) stay outside the fraction until the graphs-in-budget generation.
    """

    engine = Engine.VLLM

    def __init__(self, generation: VllmGeneration = DEFAULT_VLLM_GENERATION) -> None:
        self.generation = generation
        self.sliding_window_paged = generation.hybrid_kv_cache
        self.sampler_bytes_per_logit = generation.sampler_bytes_per_logit
        self.cuda_graphs_inside_fraction = generation.cuda_graphs_inside_fraction

    def default_scheduling(self, cuda_total_bytes: int, gpu: GpuType, max_model_len: int) -> Scheduling:
        """vLLM's OpenAI-server defaults: V1 batches more on >= 70 GiB GPUs other than A100; V0 prefills
        whole prompts (no chunking up to 32K tokens)."""
        if self.generation.v0_engine:
            batched = max(max_model_len, 2048) if max_model_len <= 32768 else 2048
            return Scheduling(256, batched, self.default_block_size)
        large = cuda_total_bytes >= 70 * GIB and "a100" not in gpu.name.lower()
        return Scheduling(1024 if large else 256, 8192 if large else 2048, self.default_block_size)

    def expert_padding(self, gpu: GpuType, weights: WeightFormat) -> ExpertPadding | None:
        """MXFP4 experts: Marlin pads each GPU's intermediate slice to 128 and hidden to 256 (pre-Hopper,
        and Hopper before 0.11's Triton kernels); Blackwell's FlashInfer pads both to 256."""
        if weights.quantization is None or weights.quantization.method != "mxfp4":
            return None
        major = gpu.compute_capability_major
        if major >= 10:
            return ExpertPadding(256, 256)
        if major == 9 and self.generation.first_version >= (0, 11, 1):
            return ExpertPadding(64, 1)
        return ExpertPadding(128, 256)

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
        return args


def _model(version: str | None, gpu: GpuType | None) -> EngineModel:
    return VllmModel(vllm_generation(version, gpu.compute_capability_major if gpu else None))


DEFINITION = EngineDefinition(Engine.VLLM, "vLLM", RUNTIME, FLAGS, _model)
