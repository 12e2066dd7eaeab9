"""What every engine module provides, and the memory behaviour paged engines share.

Engines differ in what their memory fraction covers. vLLM gives `--gpu-memory-utilization` x total to
weights + profiled activation peak + non-torch allocations + KV cache, and keeps its CUDA context and
CUDA graphs outside. SGLang's `--mem-fraction-static` x the free memory at start covers weights + KV
pool only; activations and graphs live in the rest. TGI's `--cuda-memory-fraction` caps what it may use,
and it keeps a small wiggle room after warm-up.

The overhead terms are named and calibrated on real vLLM start-up logs (benchmarks/calibration.py);
each constant says what it stands for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import GpuType
from vramgate.sizing.memory import ExpertPadding, WeightFormat
from vramgate.sizing.units import GIB, MIB


class Engine(StrEnum):
    """The registry of engines: each value names the module of this package that defines it."""

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


@dataclass(frozen=True)
class PlanFlags:
    """How one engine spells the flags whose values a plan computes (None: the engine has no such flag).

    The argument builder writes these spellings, and `extraArgs` may not set them."""

    model: str
    tensor_parallel: str
    pipeline_parallel: str | None
    max_model_len: str
    max_input_tokens: str | None
    max_num_seqs: str
    memory_fraction: str
    dtype: str
    kv_cache_dtype: str
    quantization: str
    max_num_batched_tokens: str
    block_size: str | None


@dataclass(frozen=True)
class EngineRuntime:
    """How one engine's official image is started and probed."""

    image: str
    command: tuple[str, ...]  # empty: the image's entrypoint is the server
    port: int
    port_flag: str
    host_flag: str | None  # only where the default does not listen on all interfaces
    health_path: str = "/health"


@dataclass(frozen=True)
class EngineDefinition:
    """Everything engine-specific, as one engine module declares it."""

    engine: Engine
    display_name: str  # as the project writes it: vLLM, TGI, SGLang
    runtime: EngineRuntime
    flags: PlanFlags
    model: Callable[[str | None, GpuType | None], EngineModel]  # memory model at a release, on a GPU


def format_fraction(value: float) -> str:
    """A memory fraction as the engines take it: two decimals, as the planner rounds it."""
    return f"{value:.2f}"


TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
