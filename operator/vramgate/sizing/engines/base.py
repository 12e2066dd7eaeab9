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

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import ASSUMED_SM_COUNT, GpuType
from vramgate.sizing.cuda_context import UNMEASURED_CONTEXT_BYTES
from vramgate.sizing.engines.options import CommandLine
from vramgate.sizing.memory import (
    NO_KV_SAFETY_MARGIN,
    ExpertPadding,
    KvLayout,
    KvSafetyMargin,
    PipelineStage,
    WeightFormat,
)
from vramgate.sizing.units import GIB, MIB, ceil_div


@dataclass(frozen=True)
class ReleaseRow:
    """One row of an engine's release table: its rules hold from `first` on, until the next row;
    `changes` says what changed there and `source` where it was read, as file@tag."""

    first: tuple[int, ...]
    changes: str
    source: str

    @property
    def version(self) -> str:
        return ".".join(str(part) for part in self.first)


RowT = TypeVar("RowT", bound=ReleaseRow)


class ReleaseTable(Generic[RowT]):
    """An engine's releases in order, each row the previous one with what changed at its release: adding
    a release is one `add` with the fields it changes."""

    def __init__(self, row_type: type[RowT]) -> None:
        self.row_type = row_type
        self.rows: list[RowT] = []

    def add(self, first: tuple[int, ...], changes: str, source: str, **fields: Any) -> None:
        if not self.rows:
            row = self.row_type(first, changes, source, **fields)
        else:
            row = replace(self.rows[-1], first=first, changes=changes, source=source, **fields)
        self.rows.append(row)


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
    # Started as the engine's offline Python class (vLLM's `LLM()`), not its server: some releases batch
    # more per step there. The operator always runs the server; logs of offline starts need it.
    offline: bool = False
    # Run without CUDA graphs or compilation (vLLM's --enforce-eager): none of their memory is taken.
    eager: bool = False
    # Loads an earlier torch.compile from a cache kept across starts instead of compiling: a new pod
    # compiles cold, which the operator plans for; logs of warm starts need it.
    compile_cached: bool = False


@dataclass(frozen=True)
class Overhead:
    """Runtime memory besides weights and KV cache, on one GPU."""

    non_torch_bytes: int  # cuBLAS/NCCL workspaces, custom all-reduce buffers: inside the fraction
    activation_bytes: int  # peak of the profiling forward pass and sampler: inside the fraction (vLLM, TGI)
    outside_bytes: int  # CUDA context and CUDA graphs: must fit in what the fraction leaves free
    # The CUDA graphs' share of the above: in the activation where the engine counts them inside the
    # fraction (vLLM 0.20+), else in the outside bytes.
    cuda_graph_bytes: int = 0

    @property
    def inside_bytes(self) -> int:
        """The part the engine takes out of its memory fraction before the KV cache."""
        return self.non_torch_bytes + self.activation_bytes


@dataclass(frozen=True)
class EncoderProfile:
    """A multimodal model's encoder run in the engine's profile, on one GPU: its own peak, and what it
    leaves allocated (its inputs and outputs) through the text model's profile."""

    peak_bytes: int
    held_bytes: int


NO_ENCODER_PROFILE = EncoderProfile(0, 0)


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
    eager: bool = False  # without CUDA graphs or compilation, as planned (vLLM: --enforce-eager)


@dataclass(frozen=True)
class FreeMemoryRule:
    """How much of the memory left free after the engine's profile becomes KV cache: all of it, or
    `kept_per_10k` of it plus KV blocks added back: the profile batch held `profile_kv_bytes` of blocks
    (counted as used memory), of which `added_back_bytes` are added back, as TGI 1.4.1-2.4 size their
    cache. Integer arithmetic, so `pool(free_for(p)) >= p`."""

    kept_per_10k: int = 10_000
    profile_kv_bytes: int = 0
    added_back_bytes: int = 0

    @property
    def keeps_all(self) -> bool:
        """Whether every free byte becomes pool: none kept back, every profile block added back."""
        return self.kept_per_10k == 10_000 and self.added_back_bytes == self.profile_kv_bytes

    def pool(self, free_bytes: int) -> int:
        """The KV pool from `free_bytes`: the fraction's memory less weights and the engine's overhead."""
        if self.keeps_all:
            return free_bytes
        return (free_bytes - self.profile_kv_bytes) * self.kept_per_10k // 10_000 + self.added_back_bytes

    def free_for(self, pool_bytes: int) -> int:
        """The least free memory whose pool holds `pool_bytes`."""
        if self.keeps_all or pool_bytes <= 0:
            return pool_bytes
        return (
            ceil_div((pool_bytes - self.added_back_bytes) * 10_000, self.kept_per_10k) + self.profile_kv_bytes
        )


ALL_FREE_MEMORY = FreeMemoryRule()


@dataclass(frozen=True)
class ProgramBuffer:
    """Scratch a sampling kernel allocates per program and keeps cached from the profile on, so it sits
    under the sampler's peak: one `row_bytes` row per program, a program per sequence up to one per SM,
    the count rounded up to a power of two but never past the SMs."""

    max_programs: int  # the GPU's streaming multiprocessors
    row_bytes: int

    def bytes_at(self, num_seqs: int) -> int:
        if num_seqs <= 0:
            return 0
        programs = min(num_seqs, self.max_programs)
        return min(1 << (programs - 1).bit_length(), self.max_programs) * self.row_bytes

    @property
    def max_bytes(self) -> int:
        return self.max_programs * self.row_bytes


NO_PROGRAM_BUFFER = ProgramBuffer(0, 0)


@dataclass(frozen=True)
class CudaGraphMemory:
    """An engine's CUDA graphs on one GPU by its batch limit n: `max_bytes` for any limit, or
    `bytes_by_seqs(n)` (never more) where they follow it; `inside` says whether the engine counts them
    inside its fraction (else they need room beside it). Two compare by their most."""

    max_bytes: int
    inside: bool
    bytes_by_seqs: Callable[[int], int] | None = field(default=None, compare=False)

    def bytes_at(self, num_seqs: int) -> int:
        return self.max_bytes if self.bytes_by_seqs is None else self.bytes_by_seqs(num_seqs)

    def inside_bytes_at(self, num_seqs: int) -> int:
        return self.bytes_at(num_seqs) if self.inside else 0

    def outside_bytes_at(self, num_seqs: int) -> int:
        return 0 if self.inside else self.bytes_at(num_seqs)


NO_CUDA_GRAPHS = CudaGraphMemory(0, inside=False)


@dataclass(frozen=True)
class WarmupReserve:
    """What an engine that measures its KV cache after warming up keeps free beyond the cache: at least
    `floor_bytes`, or `peak_share` of the transient peak, on top of the peak itself. It binds where the
    fraction leaves less free than that beside what was used before the engine's snapshot."""

    floor_bytes: int
    peak_share: float

    def bytes_for(self, transient_peak_bytes: int) -> int:
        return max(self.floor_bytes, int(transient_peak_bytes * self.peak_share))


NO_WARMUP_RESERVE = WarmupReserve(0, 0.0)


@dataclass(frozen=True)
class OverheadCurve:
    """An engine's overhead on one GPU as a function of its batch limit n (`max_num_seqs`).

    Every term is fixed but the profile's sampler, which grows linearly with n, and the CUDA graphs,
    which step up with n to a most; the profile peak is the larger of the forward pass and the sampler.
    So the largest batch that fits follows from arithmetic, and a few steps.
    """

    non_torch_bytes: int
    forward_bytes: int  # the MLP's live tensors over the profiled tokens
    sampler_base_bytes: int  # the last hidden states the sampler keeps
    sampler_bytes_per_seq: float  # fp32 logits and their working copies, one vocab-wide row per sequence
    fixed_activation_bytes: int  # what a profile leaves allocated or reserved under its peak
    outside_bytes: int  # what must fit beside the fraction (the CUDA context), CUDA graphs apart
    activation_inside: bool  # False: the profile peak lives outside the fraction too (SGLang)
    free_memory: FreeMemoryRule = ALL_FREE_MEMORY  # what of the memory left free the KV pool gets
    sampler_buffer: ProgramBuffer = NO_PROGRAM_BUFFER  # the sampling kernel's cached scratch
    cuda_graphs: CudaGraphMemory = NO_CUDA_GRAPHS
    warmup_reserve: WarmupReserve = NO_WARMUP_RESERVE

    def kept_free_bytes(self, num_seqs: int) -> int:
        """The margin the engine keeps free beyond its fraction's complement when started for `num_seqs`
        (none unless it sizes its KV cache after warming up): from the profile's transient peak, what
        the profile leaves allocated counted in too, the safe side."""
        if self.warmup_reserve == NO_WARMUP_RESERVE:  # the planner asks on every evaluation
            return 0
        peak = self.activation_bytes(num_seqs) - self.cuda_graphs.inside_bytes_at(num_seqs)
        return self.warmup_reserve.bytes_for(peak)

    def activation_bytes(self, num_seqs: int) -> int:
        sampler = (
            self.sampler_base_bytes
            + num_seqs * self.sampler_bytes_per_seq
            + self.sampler_buffer.bytes_at(num_seqs)
        )
        peak = round(max(self.forward_bytes, sampler)) + self.fixed_activation_bytes
        return peak + self.cuda_graphs.inside_bytes_at(num_seqs)

    def at(self, num_seqs: int) -> Overhead:
        activation = self.activation_bytes(num_seqs)
        outside = self.outside_bytes + self.cuda_graphs.outside_bytes_at(num_seqs)
        graphs = self.cuda_graphs.bytes_at(num_seqs)
        if not self.activation_inside:
            return Overhead(self.non_torch_bytes, 0, outside + activation, graphs)
        return Overhead(self.non_torch_bytes, activation, outside, graphs)

    def inside_bytes(self, num_seqs: int) -> int:
        return self.non_torch_bytes + (self.activation_bytes(num_seqs) if self.activation_inside else 0)

    def pool_bytes(self, budget_bytes: int, num_seqs: int) -> int:
        """The KV pool the engine allocates from `budget` (the fraction's memory less the weights) when
        started for `num_seqs`."""
        return self.free_memory.pool(budget_bytes - self.inside_bytes(num_seqs))

    def budget_for(self, pool_bytes: int, num_seqs: int) -> int:
        """The least budget (the fraction's memory less the weights) whose pool holds `pool_bytes`."""
        return self.inside_bytes(num_seqs) + self.free_memory.free_for(pool_bytes)

    def largest_batch(
        self,
        budget_bytes: int,
        sequence_bytes: int,
        upper: int,
        margin: KvSafetyMargin = NO_KV_SAFETY_MARGIN,
    ) -> int:
        """The largest n in [0, upper] with budget_for(margin.pool_for(n x sequence_bytes), n) <= budget
        (0 when none)."""

        def fits(n: int) -> bool:
            return self.budget_for(margin.pool_for(n * sequence_bytes), n) <= budget_bytes

        # pool_for(kv) is (kv + absolute) / kept: a sequence costs sequence / kept, the margin comes first;
        # the engine turns only free_kept of the free memory (less its profile's blocks) into the pool, and
        # adds back the blocks it says.
        kept = (10_000 - margin.relative_per_10k) / 10_000
        free_kept = self.free_memory.kept_per_10k / 10_000
        per_seq = sequence_bytes / kept / free_kept
        room = budget_bytes - self.non_torch_bytes - margin.absolute_bytes / kept / free_kept
        room -= self.free_memory.profile_kv_bytes - self.free_memory.added_back_bytes / free_kept
        if self.activation_inside:
            room -= self.fixed_activation_bytes
            if self.cuda_graphs.inside:  # the graphs at their most: the estimate stays at or below the answer
                room -= self.cuda_graphs.max_bytes
            by_forward = (room - self.forward_bytes) / per_seq
            # The sampler's buffer at its largest: the estimate stays at or below the answer.
            sampler_fixed = self.sampler_base_bytes + self.sampler_buffer.max_bytes
            by_sampler = (room - sampler_fixed) / (self.sampler_bytes_per_seq + per_seq)
            estimate = min(by_forward, by_sampler)
        else:
            estimate = room / per_seq
        n = min(max(math.floor(estimate), 0), upper)
        while n > 0 and not fits(n):  # rounding: a step or two
            n -= 1
        # Terms below their largest (the sampler's buffer, the graphs of a smaller batch) leave room above:
        # gallop, then halve, so short sequences cost a few steps, not one per sequence.
        step = 1
        while n + step <= upper and fits(n + step):
            n += step
            step *= 2
        beyond = min(n + step, upper + 1)  # does not fit, or lies past upper
        while beyond - n > 1:
            middle = (n + beyond) // 2
            n, beyond = (middle, beyond) if fits(middle) else (n, middle)
        return n


class EngineModel(ABC):
    """Base of the three engine models: the memory behaviour shared by paged engines."""

    engine: Engine
    default_block_size: int = 16
    # Overhead terms (bytes on one GPU), shared unless an engine measures otherwise: cuBLAS and other
    # non-torch allocations, NCCL/all-reduce buffers with TP, the CUDA context, captured CUDA graphs.
    non_torch_bytes: int = round(0.13 * GIB)
    non_torch_bytes_tensor_parallel: int = round(0.28 * GIB)
    cuda_context_bytes: int = UNMEASURED_CONTEXT_BYTES  # the GPU's own once known (set_cuda_context)
    cuda_graph_bytes: int = 512 * MIB
    sampler_bytes_per_logit: float = 8.0  # fp32 logits and one working copy
    activation_inside_fraction: bool = True
    sliding_window_paged: bool = True
    cuda_context_inside_fraction: bool = False  # the engine measures used memory, its own context included
    sm_count: int = ASSUMED_SM_COUNT  # the GPU's streaming multiprocessors (kernels that size buffers per SM)
    release_label: str = "any"  # the release whose rules apply
    assumptions: tuple[str, ...] = ()  # what the model assumed for lack of a stated release or install

    # The engine takes the memory its fraction applies to after its tensor-parallel communicators are
    # up, so their buffers shrink that base instead of coming out of the fraction.
    tensor_parallel_buffers_in_baseline: bool = False
    warmup_reserve: WarmupReserve = NO_WARMUP_RESERVE  # kept free where the KV cache is sized after warm-up

    def usable_bytes(self, cuda_total_bytes: int, fraction: float, tensor_parallel: int = 1) -> int:
        """Memory the fraction gives to weights + inside overhead + KV cache on one of `tensor_parallel`
        GPUs."""
        return int(cuda_total_bytes * fraction)

    def set_cuda_context(self, context_bytes: int) -> None:
        """Take the CUDA context of the GPU the model plans for (sizing/cuda_context.py)."""
        self.cuda_context_bytes = context_bytes

    def tensor_parallel_buffer_bytes(self, tensor_parallel: int) -> int:
        """NCCL and custom all-reduce buffers on one GPU (none without tensor parallelism)."""
        return self.non_torch_bytes_tensor_parallel if tensor_parallel > 1 else 0

    def cuda_graphs_inside(self, arch: ModelArchitecture, weights: WeightFormat) -> bool:
        """Whether the profile's CUDA graph estimate for this model counts inside the fraction."""
        return self.cuda_graphs_inside_fraction

    cuda_graphs_inside_fraction: bool = False
    cuda_graphs_follow_batch: bool = False  # the graphs depend on the batch limit (cuda_graph_bytes_for)
    # How the engine groups uneven attention types for its paged cache (KvLayout.larger_group_below).
    larger_group_below: float = 1.0

    def reported_kv_tokens(
        self,
        layout: KvLayout,
        kv_budget_bytes: int,
        max_model_len: int,
        max_batched_tokens: int,
        arch: ModelArchitecture | None = None,
    ) -> int:
        """The KV cache size in tokens as the engine prints it at start-up: whole blocks of every group
        unless the engine says otherwise (`arch`: the model, where the engine's figure depends on it)."""
        return layout.capacity_tokens(kv_budget_bytes)

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

    def default_memory_fraction(
        self,
        gpu: GpuType,
        tensor_parallel: int,
        pipeline_parallel: int,
        arch: ModelArchitecture,
        max_num_batched_tokens: int | None = None,
        max_num_seqs: int | None = None,
    ) -> float | None:
        """The memory fraction the engine picks when its command line leaves it out, given the batch limits
        the command line sets (None: not modelled)."""
        return None

    def expert_padding(self, gpu: GpuType, weights: WeightFormat) -> ExpertPadding | None:
        """How the engine's MoE kernels on this GPU pad expert weights (None: stored as counted)."""
        return None

    def resident_weights(self, gpu: GpuType, weights: WeightFormat) -> WeightFormat:
        """What of a checkpoint's format the engine keeps on this GPU once loaded (all of it by default)."""
        return weights

    def mla_head_size(self, arch: ModelArchitecture) -> int | None:
        """The head size MLA is cached at as full K and V per head (None: its latent, once per GPU)."""
        return None

    def mla_latent_alignment(self, arch: ModelArchitecture, compute_bytes: int) -> int:
        """The multiple of elements a cached MLA latent is rounded up to (1: none)."""
        return 1

    def mlp_peaks(self, arch: ModelArchitecture) -> tuple[tuple[int, int], ...]:
        """(hidden-wide, intermediate-wide) tensors alive at each moment a layer's MLP may peak, what the
        frames calling it still hold included; the forward peaks at the largest."""
        return ((3, 3),)

    def overhead_curve(
        self,
        arch: ModelArchitecture,
        weights: WeightFormat,
        tensor_parallel: int,
        max_num_batched_tokens: int,
        samples: bool = True,
        embeds: bool = True,
        layers: int | None = None,
        max_num_seqs: int | None = None,
        kv_cache_fp8: bool = False,
    ) -> OverheadCurve:
        """Overhead on one GPU for any batch limit; `samples` is false on pipeline stages before the last
        (no sampler), `embeds` on those after the first (no embedding), `layers` the stage's decoder layers
        (all of them by default), `max_num_seqs` the batch limit the engine starts with where its CUDA
        graphs depend on it (None: any limit, the largest graphs), `kv_cache_fp8` whether the KV cache is
        stored in fp8 (attention kernels differ).

        The forward peak holds the hidden-wide and intermediate-wide tensors the engine's code keeps
        alive at once (`mlp_peaks`; MoE layers: the intermediates of each routed expert copy). A multimodal
        encoder's profile run comes first: what it leaves allocated stands under both text peaks, and its
        own peak bounds the profile from below, as does compiling the model (`compile_profile_bytes`)."""
        element = weights.compute_bytes

        def width(hidden_copies: int, intermediate_copies: int) -> int:
            dense_mlp = intermediate_copies * arch.intermediate_size // tensor_parallel
            moe_mlp = arch.num_experts_per_token * (
                intermediate_copies * arch.moe_intermediate_size // tensor_parallel + arch.hidden_size
            )
            return hidden_copies * arch.hidden_size + max(dense_mlp, moe_mlp if arch.is_moe else 0)

        widest = max(width(hidden, intermediate) for hidden, intermediate in self.mlp_peaks(arch))
        tokens = max_num_batched_tokens
        non_torch = self.non_torch_bytes + self.kv_budget_reserve_bytes(arch)
        if not self.tensor_parallel_buffers_in_baseline:
            non_torch += self.tensor_parallel_buffer_bytes(tensor_parallel)
        stage_layers = arch.num_layers if layers is None else layers

        # The planner asks again for the batch limits it compares. A dict, not functools.cache: a plan
        # builds a curve per GPU type and count, and decorating each closure cost more than it saved.
        graphs_by_seqs: dict[int | None, int] = {}

        def graphs_at(num_seqs: int | None) -> int:
            if num_seqs not in graphs_by_seqs:
                graphs_by_seqs[num_seqs] = self.cuda_graph_bytes_for(
                    arch, tensor_parallel, stage_layers, element * widest, tokens, num_seqs, kv_cache_fp8
                )
            return graphs_by_seqs[num_seqs]

        follows = self.cuda_graphs_follow_batch and max_num_seqs is None
        graphs = CudaGraphMemory(
            graphs_at(max_num_seqs), self.cuda_graphs_inside(arch, weights), graphs_at if follows else None
        )
        outside = self.cuda_context_bytes
        if self.cuda_context_inside_fraction:
            non_torch += self.cuda_context_bytes
            outside = 0
        encoder = self.encoder_profile(arch, weights, tensor_parallel, tokens)
        text_forward = tokens * element * widest
        return OverheadCurve(
            non_torch_bytes=non_torch,
            forward_bytes=max(
                text_forward,
                encoder.peak_bytes - encoder.held_bytes,
                self.compile_profile_bytes(arch, weights, tensor_parallel, tokens) if embeds else 0,
                self.warmup_step_bytes(arch, weights, tokens) if samples else 0,
            ),
            sampler_base_bytes=tokens * element * arch.hidden_size
            + self.persistent_workspace_bytes(arch, weights, tensor_parallel, tokens),
            sampler_bytes_per_seq=arch.vocab_size * self.sampler_logit_bytes(arch, weights)
            if samples
            else 0.0,
            fixed_activation_bytes=self.reserved_profile_bytes(arch, weights, tensor_parallel, tokens)
            + encoder.held_bytes
            + (0 if embeds else self.stage_input_bytes(arch, weights, tokens)),
            outside_bytes=outside,
            activation_inside=self.activation_inside_fraction,
            sampler_buffer=self.sampler_program_buffer(arch, weights) if samples else NO_PROGRAM_BUFFER,
            cuda_graphs=graphs,
            warmup_reserve=self.warmup_reserve,
        )

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
        """The CUDA graphs on one GPU of a stage holding `layers` layers, whose forward keeps
        `forward_bytes_per_token` alive per token, started for `max_num_seqs` (None: any; the most). By
        default the figure measured for the default capture sizes, whatever the batch."""
        return self.cuda_graph_bytes

    def sampler_logit_bytes(self, arch: ModelArchitecture, weights: WeightFormat) -> float:
        """Bytes the profile's sampler holds per logit of its dummy batch."""
        return self.sampler_bytes_per_logit

    def sampler_program_buffer(self, arch: ModelArchitecture, weights: WeightFormat) -> ProgramBuffer:
        """Scratch the profile's sampling kernel keeps per program on this GPU (none by default)."""
        return NO_PROGRAM_BUFFER

    def reserved_profile_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """Memory the profile leaves reserved beyond its peak, which the release counts (none by default)."""
        return 0

    def encoder_profile(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> EncoderProfile:
        """The multimodal encoder's part of the profile (none by default: not modelled)."""
        return NO_ENCODER_PROFILE

    def stage_input_bytes(self, arch: ModelArchitecture, weights: WeightFormat, tokens: int) -> int:
        """The buffer a pipeline stage after the first receives the previous stage's activations in, kept
        from the profile on (none by default)."""
        return 0

    def compile_profile_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """What compiling the model inside the profile allocates at its peak, on the first pipeline stage
        (none by default: the engine does not compile there)."""
        return 0

    def warmup_step_bytes(self, arch: ModelArchitecture, weights: WeightFormat, tokens: int) -> int:
        """The transient peak of a warm-up step the engine measures before sizing its KV cache, beyond
        its forward pass, on the last pipeline stage (none by default: no such step)."""
        return 0

    def loaded_buffer_bytes(self, arch: ModelArchitecture, weights: WeightFormat) -> int:
        """Buffers the engine builds beside the weights while loading, whole on every GPU (none by
        default)."""
        return 0

    def derived_weight_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, stage: PipelineStage
    ) -> int:
        """Tensors the engine computes from the loaded weights and keeps beside them, per GPU: its weights
        figure counts them (none by default)."""
        return 0

    def weight_rounding_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, stage: PipelineStage
    ) -> int:
        """What the engine's weights figure counts beyond the tensors' bytes, per GPU (nothing by default:
        engines that read free memory count the reservation, which the overhead already bounds)."""
        return 0

    def free_memory_rule(
        self, layout: KvLayout, max_model_len: int, max_num_batched_tokens: int
    ) -> FreeMemoryRule:
        """What of the memory left free after the profile becomes KV cache (all of it by default)."""
        return ALL_FREE_MEMORY

    def model_assumptions(self, arch: ModelArchitecture) -> tuple[str, ...]:
        """What the plan of `arch` on this engine leaves unmodelled, for its assumptions (none by default)."""
        return ()

    def kv_budget_reserve_bytes(self, arch: ModelArchitecture) -> int:
        """What the engine takes out of its KV budget for buffers it allocates once the pool is sized,
        per GPU (none by default)."""
        return 0

    def persistent_workspace_bytes(
        self, arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, tokens: int
    ) -> int:
        """Buffers the forward pass leaves allocated, under the sampler's peak (none by default)."""
        return 0

    def overhead(
        self,
        arch: ModelArchitecture,
        weights: WeightFormat,
        tensor_parallel: int,
        scheduling: Scheduling,
        samples: bool = True,
    ) -> Overhead:
        """Overhead on one GPU with the engine started for `scheduling`."""
        curve = self.overhead_curve(
            arch,
            weights,
            tensor_parallel,
            scheduling.max_num_batched_tokens,
            samples,
            max_num_seqs=scheduling.max_num_seqs,
        )
        return curve.at(scheduling.max_num_seqs)

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
class OtherPort:
    """A port the server binds besides its HTTP port: its default, the option (and, under clap, the
    variable of the same name) that moves it, and what listens there."""

    default: int
    option: str
    purpose: str


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
    other_ports: tuple[OtherPort, ...] = ()  # what else the server binds on its HTTP interfaces


@dataclass(frozen=True)
class EngineDefinition:
    """Everything engine-specific, as one engine module declares it."""

    engine: Engine
    display_name: str  # as the project writes it: vLLM, TGI, SGLang
    runtime: EngineRuntime
    flags: PlanFlags
    # The memory model of a build on a GPU of this compute capability major (None: unknown).
    model: Callable[[EngineBuild, int | None], EngineModel]
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


# The patch of a release named by its minor version only: an image tag such as
# text-generation-inference:1.4 follows the newest patch of 1.4, so it takes the rules of the last row of 1.4.
LATEST_PATCH = 1 << 30


def parse_version(version: str | None) -> tuple[int, ...] | None:
    """(0, 11, 0) from "0.11.0", "v0.11.0", "0.10.1.1"; (1, 4, LATEST_PATCH) from a minor tag, "1.4"; None
    for no version, "latest" and untagged source builds ("0.1.devN")."""
    match = _VERSION.search(version or "")
    if match is None:
        return None
    patch = LATEST_PATCH if match[3] is None else int(match[3])
    number = (int(match[1]), int(match[2]), patch)
    if number < (0, 2, 0) and "dev" in (version or ""):
        return None
    return number


def version_label(version: tuple[int, ...]) -> str:
    """ "0.11.0" from (0, 11, 0), "1.4.x" from a minor tag's, "0.4.6.post2" from (0, 4, 6, 2)."""
    major, minor, patch = version[:3]
    label = f"{major}.{minor}.{'x' if patch == LATEST_PATCH else patch}"
    return f"{label}.post{version[3]}" if len(version) > 3 else label


def beyond_newest_read(engine: str, label: str, version: tuple[int, ...], newest: str) -> tuple[str, ...]:
    """The assumption to state when a build is newer than the newest release whose source was read: its
    rules are that release's, which nobody checked against the newer source."""
    newest_version = parse_version(newest)
    assert newest_version is not None
    if version[:3] <= newest_version:
        return ()
    said = f"{engine} {label} is newer than the newest release read ({newest})"
    return (f"{said}: the rules of {newest} apply",)


def format_fraction(value: float) -> str:
    """A memory fraction as the engines take it: two decimals, as the planner rounds it."""
    return f"{value:.2f}"


TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
