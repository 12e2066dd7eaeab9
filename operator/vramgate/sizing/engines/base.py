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

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import GpuType
from vramgate.sizing.engines.options import CommandLine
from vramgate.sizing.memory import ExpertPadding, WeightFormat
from vramgate.sizing.units import GIB, MIB


class Engine(StrEnum):
    """The registry of engines: each value names the module of this package that defines it."""

    VLLM = "vllm"
    TGI = "tgi"
    SGLANG = "sglang"


@dataclass(frozen=True)
class EngineBuild:
    """Which release of an engine runs, and from which install: what its memory rules depend on besides
    the GPU. Either may be unknown; the engine then says what it assumed."""

    version: str | None = None  # as stated: an image tag, `runtime.engineVersion`, `--engine-version`
    image: str | None = None  # the container image, when known
    flashinfer: bool | None = None  # whether the install has FlashInfer (None: as the image says, or unknown)


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
    mlp_peak: tuple[int, int] = (3, 3),
) -> int:
    """Peak of a profiling run: `num_tokens` through the model, then sampling for `num_seqs` sequences.

    `mlp_peak` counts the hidden-wide and intermediate-wide tensors alive at once in a layer's MLP, as
    the engine's model code holds them (vLLM: 3 and 3, see VllmModel; TGI: 2 and 4). MoE layers hold
    the intermediates of each routed expert copy. The sampler runs after the forward pass, on the last
    hidden states and the logits with their sorted/softmaxed copies (fp32, vocab wide, one row per
    sequence); the larger of the two peaks counts.
    """
    element = weights.compute_bytes
    hidden_copies, intermediate_copies = mlp_peak
    dense_mlp = intermediate_copies * arch.intermediate_size // tensor_parallel
    moe_mlp = arch.num_experts_per_token * (
        intermediate_copies * arch.moe_intermediate_size // tensor_parallel + arch.hidden_size
    )
    mlp = max(dense_mlp, moe_mlp if arch.is_moe else 0)
    forward = num_tokens * element * (hidden_copies * arch.hidden_size + mlp)
    sampler = num_tokens * element * arch.hidden_size + num_seqs * arch.vocab_size * sampler_bytes_per_logit
    return round(max(forward, sampler))


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
    mla_head_size: int | None = None  # MLA cached as full K and V per head of this size, not as its latent
    mlp_peak: tuple[int, int] = (3, 3)  # hidden- and intermediate-wide tensors alive at once in an MLP
    cuda_context_inside_fraction: bool = False  # the engine measures used memory, its own context included
    release_label: str = "any"  # the release whose rules apply
    assumptions: tuple[str, ...] = ()  # what the model assumed for lack of a stated release or install

    def usable_bytes(self, cuda_total_bytes: int, fraction: float) -> int:
        """Memory the fraction gives to weights + inside overhead + KV cache."""
        return int(cuda_total_bytes * fraction)

    cuda_graphs_inside_fraction: bool = False

    @abstractmethod
    def default_scheduling(
        self,
        cuda_total_bytes: int,
        gpu: GpuType,
        max_model_len: int,
        arch: ModelArchitecture | None = None,
        tensor_parallel: int = 1,
        fraction: float = 1.0,
    ) -> Scheduling:
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
            self.mlp_peak,
        )
        non_torch = self.non_torch_bytes + (
            self.non_torch_bytes_tensor_parallel if tensor_parallel > 1 else 0
        )
        outside = self.cuda_context_bytes + self.cuda_graph_bytes
        if self.cuda_context_inside_fraction:
            non_torch += self.cuda_context_bytes
            outside -= self.cuda_context_bytes
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

    image: str  # the default: its tag is the release an unstated one is taken to be
    repositories: tuple[str, ...]  # the official images: their installs are known
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
    model: Callable[[EngineBuild, GpuType | None], EngineModel]  # memory model of a build on a GPU
    command_line: CommandLine  # how its parser reads extraArgs: the flags no extra argument may set

    def is_official_image(self, image: str | None) -> bool:
        """Whether `image` is one of the engine's official images (any tag or digest, any mirror host)."""
        if image is None:
            return False
        repository = image.split("@", 1)[0]
        name, _, tag = repository.rpartition(":")
        repository = name if name and "/" not in tag else repository
        return any(repository == r or repository.endswith(f"/{r}") for r in self.runtime.repositories)


_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(version: str | None) -> tuple[int, ...] | None:
    """(0, 11, 0) from "0.11.0", "v0.11.0", "0.10.1.1"; None for no version, "latest" and untagged source
    builds ("0.1.devN")."""
    match = _VERSION.search(version or "")
    if match is None:
        return None
    number = (int(match[1]), int(match[2]), int(match[3] or 0))
    if number < (0, 2, 0) and "dev" in (version or ""):
        return None
    return number


def format_fraction(value: float) -> str:
    """A memory fraction as the engines take it: two decimals, as the planner rounds it."""
    return f"{value:.2f}"


TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
