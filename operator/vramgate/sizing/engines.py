"""What each serving engine does with GPU memory, and the command-line arguments that carry a plan.

Engines differ in what their memory fraction covers. vLLM gives `--gpu-memory-utilization` x total to
weights + profiled activation peak + non-torch allocations + KV cache, and keeps its CUDA context and
CUDA graphs outside. SGLang's `--mem-fraction-static` x the free memory at start covers weights + KV
pool only; activations and graphs live in the rest. TGI's `--cuda-memory-fraction` caps what it may use,
and it keeps a small wiggle room after warm-up.

The overhead terms are named and calibrated on real vLLM start-up logs (benchmarks/calibration.py);
each constant says what it stands for.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import GpuType
from vramgate.sizing.memory import ExpertPadding, WeightFormat
from vramgate.sizing.units import GIB, MIB


class Engine(StrEnum):
    VLLM = "vllm"
    TGI = "tgi"
    SGLANG = "sglang"


@dataclass(frozen=True)
class Overhead:
    """Runtime memory besides weights and KV cache, on one GPU."""

    non_torch_bytes: int  # cuBLAS/NCCL workspaces, custom all-reduce buffers: inside the fraction
    activation_bytes: int  # peak of the profiling forward pass and sampler: inside the fraction (vLLM, TGI)
    outside_bytes: int  # CUDA context and CUDA graphs: must fit in what the fraction leaves free

    @property
    def inside_bytes(self) -> int:
        """The part the engine takes out of its memory fraction before the KV cache."""
        return self.non_torch_bytes + self.activation_bytes


@dataclass(frozen=True)
class Scheduling:
    """Batch limits the engine runs with; they decide the activation peak it profiles."""

    max_num_seqs: int
    max_num_batched_tokens: int
    block_size_tokens: int


@dataclass(frozen=True)
class Launch:
    """Everything an engine's command line must carry for one plan."""

    model: str
    tensor_parallel: int
    pipeline_parallel: int
    memory_fraction: float
    max_model_len: int
    max_num_seqs: int
    weights: WeightFormat
    kv_cache_fp8: bool
    max_num_batched_tokens: int | None  # only when the user pinned it; engines pick their own otherwise
    block_size_tokens: int | None  # only when it differs from the engine's default


def activation_peak_bytes(
    arch: ModelArchitecture,
    weights: WeightFormat,
    tensor_parallel: int,
    num_tokens: int,
    num_seqs: int,
    sampler_bytes_per_logit: float,
) -> int:
    """Peak of a profiling run: `num_tokens` through the model, then sampling for `num_seqs` sequences.

    The hidden states of the batch stay alive while either the MLP's intermediate tensors (dense:
    gate+up and activated output; MoE: the same per routed expert copy) or the sampler's logits and their
    sorted/softmaxed copies (fp32, vocab wide, one row per sequence) are live, whichever is larger.
    """
    element = weights.compute_bytes
    hidden_states = num_tokens * arch.hidden_size * element
    dense_mlp = 3 * arch.intermediate_size // tensor_parallel
    moe_mlp = arch.num_experts_per_token * (
        3 * arch.moe_intermediate_size // tensor_parallel + arch.hidden_size
    )
    forward = num_tokens * element * max(dense_mlp, moe_mlp if arch.is_moe else 0)
    sampler = num_seqs * arch.vocab_size * sampler_bytes_per_logit
    return round(hidden_states + max(forward, sampler))


class EngineModel(ABC):
    """Base of the three engine models: the memory behaviour shared by paged engines."""

    engine: Engine
    fraction_flag: str
    default_block_size: int = 16
    # Overhead terms (bytes on one GPU), shared unless an engine measures otherwise: cuBLAS and other
    # non-torch allocations, NCCL/all-reduce buffers with TP, the CUDA context, captured CUDA graphs.
    non_torch_bytes: int = round(0.13 * GIB)
    non_torch_bytes_tensor_parallel: int = round(0.28 * GIB)
    cuda_context_bytes: int = 620 * MIB  # measured: 619 MiB on an H100 (PyTorch 2.11, CUDA 13)
    cuda_graph_bytes: int = 512 * MIB
    sampler_bytes_per_logit: float = 8.0  # fp32 logits and one working copy
    activation_inside_fraction: bool = True
    sliding_window_paged: bool = True

    def usable_bytes(self, cuda_total_bytes: int, fraction: float) -> int:
        """Memory the fraction gives to weights + inside overhead + KV cache."""
        return int(cuda_total_bytes * fraction)

    cuda_graphs_inside_fraction: bool = False

    @abstractmethod
    def default_scheduling(self, cuda_total_bytes: int, gpu: GpuType, max_model_len: int) -> Scheduling:
        """The batch limits the engine picks itself when the command line does not set them."""

    def expert_padding(self, gpu: GpuType, weights: WeightFormat) -> ExpertPadding | None:
        """How the engine's MoE kernels on this GPU pad expert weights (None: stored as counted)."""
        return None

    def overhead(
        self,
        arch: ModelArchitecture,
        weights: WeightFormat,
        tensor_parallel: int,
        scheduling: Scheduling,
        samples: bool = True,
    ) -> Overhead:
        """Overhead on one GPU; `samples` is false on pipeline stages before the last (no sampler)."""
        activation = activation_peak_bytes(
            arch,
            weights,
            tensor_parallel,
            scheduling.max_num_batched_tokens,
            scheduling.max_num_seqs,
            self.sampler_bytes_per_logit if samples else 0.0,
        )
        non_torch = self.non_torch_bytes + (
            self.non_torch_bytes_tensor_parallel if tensor_parallel > 1 else 0
        )
        outside = self.cuda_context_bytes + self.cuda_graph_bytes
        if self.cuda_graphs_inside_fraction:
            activation += self.cuda_graph_bytes
            outside -= self.cuda_graph_bytes
        if not self.activation_inside_fraction:
            return Overhead(non_torch_bytes=non_torch, activation_bytes=0, outside_bytes=outside + activation)
        return Overhead(non_torch_bytes=non_torch, activation_bytes=activation, outside_bytes=outside)

    @abstractmethod
    def arguments(self, launch: Launch) -> list[str]:
        """The engine's command-line arguments for one plan."""


def _fraction(value: float) -> str:
    return f"{value:.2f}"


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
    fraction_flag = "--gpu-memory-utilization"

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
            f"--model={launch.model}",
            f"--tensor-parallel-size={launch.tensor_parallel}",
            f"--max-model-len={launch.max_model_len}",
            f"--max-num-seqs={launch.max_num_seqs}",
            f"{self.fraction_flag}={_fraction(launch.memory_fraction)}",
            f"--dtype={_TORCH_NAMES[launch.weights.compute_dtype]}",
            f"--kv-cache-dtype={'fp8' if launch.kv_cache_fp8 else 'auto'}",
        ]
        if launch.pipeline_parallel > 1:
            args.append(f"--pipeline-parallel-size={launch.pipeline_parallel}")
        quant = launch.weights.quantization
        if quant is not None and quant.method == "fp8":
            args.append("--quantization=fp8")
        if launch.max_num_batched_tokens is not None:
            args.append(f"--max-num-batched-tokens={launch.max_num_batched_tokens}")
        if launch.block_size_tokens is not None:
            args.append(f"--block-size={launch.block_size_tokens}")
        return args


class SglangModel(EngineModel):
    """SGLang: `--mem-fraction-static` x free memory at start holds weights and the KV pool.

    Calibrated on R32 (RTX 3090): 0.21 GiB beyond the weights is taken before the pool; the pool is
    token-granular (page size 1); activations and CUDA graphs use the memory the fraction leaves.
    """

    engine = Engine.SGLANG
    fraction_flag = "--mem-fraction-static"
    default_block_size = 1
    non_torch_bytes = round(0.21 * GIB)
    activation_inside_fraction = False
    sliding_window_paged = False

    def usable_bytes(self, cuda_total_bytes: int, fraction: float) -> int:
        return int((cuda_total_bytes - self.cuda_context_bytes) * fraction)

    def default_scheduling(self, cuda_total_bytes: int, gpu: GpuType, max_model_len: int) -> Scheduling:
        return Scheduling(max_num_seqs=256, max_num_batched_tokens=8192, block_size_tokens=1)

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"--model-path={launch.model}",
            f"--tp-size={launch.tensor_parallel}",
            f"--context-length={launch.max_model_len}",
            f"--max-running-requests={launch.max_num_seqs}",
            f"{self.fraction_flag}={_fraction(launch.memory_fraction)}",
            f"--dtype={_TORCH_NAMES[launch.weights.compute_dtype]}",
        ]
        if launch.pipeline_parallel > 1:
            args.append(f"--pp-size={launch.pipeline_parallel}")
        if launch.kv_cache_fp8:
            args.append("--kv-cache-dtype=fp8_e4m3")
        quant = launch.weights.quantization
        if quant is not None and quant.method == "fp8":
            args.append("--quantization=fp8")
        if launch.max_num_batched_tokens is not None:
            args.append(f"--chunked-prefill-size={launch.max_num_batched_tokens}")
        return args


class TgiModel(EngineModel):
    """Text Generation Inference: `--cuda-memory-fraction` caps the process; KV blocks fill what warm-up
    leaves, less a 2% wiggle room. Warm-up runs `--max-batch-prefill-tokens` (4096 by default)."""

    engine = Engine.TGI
    fraction_flag = "--cuda-memory-fraction"
    sliding_window_paged = False

    def default_scheduling(self, cuda_total_bytes: int, gpu: GpuType, max_model_len: int) -> Scheduling:
        return Scheduling(max_num_seqs=128, max_num_batched_tokens=4096, block_size_tokens=16)

    def usable_bytes(self, cuda_total_bytes: int, fraction: float) -> int:
        return int(cuda_total_bytes * fraction * 0.98)

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"--model-id={launch.model}",
            f"--num-shard={launch.tensor_parallel}",
            f"--max-total-tokens={launch.max_model_len}",
            f"--max-input-tokens={max(1, launch.max_model_len - 1)}",
            f"--max-concurrent-requests={launch.max_num_seqs}",
            f"{self.fraction_flag}={_fraction(launch.memory_fraction)}",
            f"--dtype={_TORCH_NAMES[launch.weights.compute_dtype]}",
        ]
        if launch.kv_cache_fp8:
            args.append("--kv-cache-dtype=fp8_e4m3fn")
        quant = launch.weights.quantization
        if quant is not None and quant.method in ("fp8", "gptq", "awq", "bitsandbytes"):
            args.append(f"--quantize={quant.method}")
        if launch.max_num_batched_tokens is not None:
            args.append(f"--max-batch-prefill-tokens={launch.max_num_batched_tokens}")
        return args


_TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def engine_model(engine: Engine, version: str | None = None, gpu: GpuType | None = None) -> EngineModel:
    """The memory model of `engine` at `version` on `gpu` (only vLLM's profile changed enough to tell
    apart, and which engine generation runs can depend on the GPU)."""
    if engine is Engine.VLLM:
        return VllmModel(vllm_generation(version, gpu.compute_capability_major if gpu else None))
    return SglangModel() if engine is Engine.SGLANG else TgiModel()
