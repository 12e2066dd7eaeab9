"""The planner: from a model and a workload to the GPU type, GPU count, memory fraction and max batch.

`plan()` is the one entry point the CLI, the admission webhook and the reconciler share. It evaluates
every GPU type at every valid tensor-parallel size, picks the cheapest that fits (or the one pinned),
and, when nothing fits, says why in numbers and what would.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import GpuType, gpu_catalog, unknown_gpu
from vramgate.sizing.engines import (
    Engine,
    EngineBuild,
    EngineModel,
    Launch,
    Overhead,
    OverheadCurve,
    engine_model,
)
from vramgate.sizing.engines.base import NO_PROGRAM_BUFFER
from vramgate.sizing.errors import SizingError
from vramgate.sizing.memory import (
    KvLayout,
    KvSafetyMargin,
    PipelineStage,
    WeightFormat,
    kv_element_bytes,
    kv_layout,
    pipeline_stages,
    resolve_weight_format,
    weights_bytes,
)
from vramgate.sizing.precision import KvCacheDtype, Precision
from vramgate.sizing.records import bounded, check
from vramgate.sizing.units import format_gib

TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
MAX_SEQUENCE_TOKENS = 10_000_000  # the longest context windows shipped today are 10M tokens
MAX_CONCURRENCY = 100_000
MAX_GPUS_PER_REPLICA = 64
DEFAULT_MAX_MEMORY_FRACTION = 0.95

# Never over-promise: the plan counts on 1% less than the KV pool it predicts, per GPU, everywhere it uses
# the pool (capacity, max batch, the fraction a target needs, `--max-num-seqs`). Derived from the fit split
# of the calibration logs, not the held-out one (README, "Safety margin"): the fit split's current-vLLM rows
# whose miss has no cause in the engine model over-predict by up to +1.7% without it. No absolute part: one
# large enough to matter pushes rows already under-predicted on small pools out of their bounds.
KV_SAFETY_MARGIN = KvSafetyMargin(relative_per_10k=100, absolute_bytes=0)

# The request fields that choose the engine model: an evaluator of a request differing in none shares them.
_ENGINE_FIELDS = (
    "engine",
    "engine_version",
    "engine_image",
    "engine_flashinfer",
    "engine_offline",
    "engine_eager",
    "engine_compile_cached",
)


@dataclass(frozen=True, kw_only=True)
class PlanRequest:
    """What a deployment asks for. Optional overrides replace a modelled figure with a known one."""

    model: ModelArchitecture
    model_source: str  # what the engine loads: a Hugging Face id or a path
    precision: Precision = Precision.AUTO
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    max_seq_len: int = field(metadata=bounded(gt=0, le=MAX_SEQUENCE_TOKENS))
    concurrency: int = field(metadata=bounded(gt=0, le=MAX_CONCURRENCY))
    engine: Engine = Engine.VLLM
    engine_version: str | None = None  # engine release, e.g. from the image tag
    engine_image: str | None = None  # the engine's container image, when known
    engine_flashinfer: bool | None = None  # whether the install has FlashInfer
    engine_offline: bool = False  # started as the engine's offline class, not its server
    engine_eager: bool = False  # without CUDA graphs or compilation (vLLM's --enforce-eager in extraArgs)
    engine_compile_cached: bool = False  # loads an earlier torch.compile (a log's start; a new pod compiles)
    gpu: GpuType | None = None
    # Tensor parallel.
    gpu_count: int | None = field(default=None, metadata=bounded(gt=0, le=MAX_GPUS_PER_REPLICA))
    pipeline_parallel: int = field(default=1, metadata=bounded(gt=0, le=MAX_GPUS_PER_REPLICA))
    max_memory_fraction: float = field(default=DEFAULT_MAX_MEMORY_FRACTION, metadata=bounded(gt=0, le=1))
    memory_fraction: float | None = field(default=None, metadata=bounded(gt=0, le=1))
    weights_bytes_override: int | None = field(default=None, metadata=bounded(ge=0))
    gpu_memory_bytes_override: int | None = field(default=None, metadata=bounded(gt=0))
    overhead_bytes_override: int | None = field(default=None, metadata=bounded(ge=0))
    max_num_batched_tokens: int | None = field(default=None, metadata=bounded(gt=0, le=MAX_SEQUENCE_TOKENS))
    max_num_seqs: int | None = field(default=None, metadata=bounded(gt=0, le=MAX_CONCURRENCY))
    block_size: int | None = field(default=None, metadata=bounded(gt=0, le=4096))

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One GPU type at one count, as a row of the whole field."""

    gpu_type: str
    gpu_count: int
    fits: bool
    memory_fraction: float  # the fraction this option needs (or the fixed one)
    max_batch: int  # concurrent max-length sequences that fit at the allowed fraction
    price_per_hour: float
    gpu_memory_bytes: int
    weights_bytes_per_gpu: int
    kv_cache_bytes_per_gpu: int
    overhead_bytes_per_gpu: int
    required_bytes_per_gpu: int


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """A nearest change that would fit: the LLMDeployment spec fields it sets, and in words."""

    changes: dict[str, str]
    text: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The planner's answer. Byte figures are per GPU where named so, else summed over the replica."""

    fits: bool
    model: str
    attention: str
    parameters: int
    weights_format: str
    engine: Engine
    engine_release: str  # the engine release whose memory rules were applied
    assumptions: list[str]  # what the plan assumed where the request did not say
    gpu_type: str
    gpu_product: str
    gpu_count: int  # all GPUs of one replica: tensor x pipeline parallel
    tensor_parallel: int
    pipeline_parallel: int
    memory_fraction: float
    memory_fraction_cap: float
    max_batch: int
    max_model_len: int
    concurrency: int
    weights_bytes: int
    weights_bytes_per_gpu: int
    kv_bytes_per_token: int  # one token over all layers, unsplit (the model's figure)
    kv_bytes_per_token_per_gpu: int
    kv_cache_bytes: int  # KV cache for the target concurrency at max length, in blocks
    kv_cache_bytes_per_gpu: int
    # KV cache the plan counts on at the fraction (the predicted pool less the safety margin), in tokens
    # as the engine prints its own, and in the bytes of its whole blocks per GPU.
    kv_capacity_tokens: int
    kv_capacity_bytes_per_gpu: int
    # What the plan holds back from the KV pool it predicts at the fraction, per GPU.
    kv_safety_margin_bytes_per_gpu: int
    max_concurrency: int  # max-length sequences the KV cache holds at once
    non_torch_bytes_per_gpu: int
    activation_bytes_per_gpu: int
    outside_bytes_per_gpu: int  # CUDA context and graphs, outside the fraction
    cuda_graph_bytes_per_gpu: int  # within the activation or the outside bytes, as the engine counts them
    cuda_graphs_inside_fraction: bool
    overhead_bytes: int
    overhead_bytes_per_gpu: int
    required_bytes: int
    required_bytes_per_gpu: int
    gpu_memory_bytes: int  # memory the CUDA runtime reports per GPU
    engine_args: dict[str, list[str]]
    alternatives: list[Candidate]
    reasons: list[str]
    suggestions: list[Suggestion]


class _Evaluation(NamedTuple):
    """The outcome of one GPU type x count for the request, before it becomes a Candidate or a Plan.
    A named tuple, not a frozen dataclass: a plan builds one per option, and a frozen dataclass sets each
    of its fields through object.__setattr__."""

    gpu: GpuType
    tensor_parallel: int
    pipeline_parallel: int
    engine: EngineModel
    weights: WeightFormat
    gpu_total_bytes: int
    weights_bytes_per_gpu: int
    layout: KvLayout
    max_batched_tokens: int
    sequence_bytes: int
    overhead: Overhead  # at the target concurrency: what `required_bytes` counts
    fraction: float
    fraction_cap: float
    usable_bytes: int
    max_batch: int
    max_concurrency: int
    target_kv_bytes: int
    fits: bool
    # Per GPU, inside the fraction: weights + runtime overhead + KV cache for the target, with the safety
    # margin on it (`_Stage.required_bytes`).
    required_bytes: int
    # KV memory the engine is predicted to get at the fraction, after its own profile at launch.
    kv_pool_bytes: int

    @property
    def kv_budget_bytes(self) -> int:
        """The part of the predicted pool the plan counts on."""
        return KV_SAFETY_MARGIN.promised(self.kv_pool_bytes)

    @property
    def gpu_count(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def price(self) -> float:
        return self.gpu.price_per_hour * self.gpu_count


# The stage that holds the fewest sequences bounds a pipeline (a C key: a plan asks once per option).
_BOTTLENECK = operator.attrgetter("max_concurrency", "max_batch")


class _Evaluator:
    """Evaluates one request on any GPU type and count; holds what does not depend on them."""

    def __init__(self, request: PlanRequest) -> None:
        self.request = request
        self._engines: dict[str, EngineModel] = {}
        self._weights_per_gpu: dict[tuple[object, ...], int] = {}
        self._least_kv: dict[tuple[object, ...], tuple[int, KvLayout]] = {}
        self.weights = resolve_weight_format(request.model, request.precision)
        self.kv_element_bytes = kv_element_bytes(request.kv_cache_dtype, self.weights)
        self.stages = pipeline_stages(request.model.num_layers, request.pipeline_parallel)

    def variant(self, **changes: Any) -> _Evaluator:
        """The evaluator of the request with `changes` (for a suggestion), sharing the engine models when
        the engine and its build are unchanged and the weights when their format is."""
        changed = _Evaluator(replace(self.request, **changes))
        if changed.weights == self.weights and changed.request.model is self.request.model:
            changed._weights_per_gpu = self._weights_per_gpu
        if all(getattr(changed.request, name) == getattr(self.request, name) for name in _ENGINE_FIELDS):
            changed._engines = self._engines
        return changed

    def engine_on(self, gpu: GpuType) -> EngineModel:
        """The engine's memory model on `gpu` (the release that runs can depend on the GPU)."""
        if gpu.name not in self._engines:
            request = self.request
            build = EngineBuild(
                request.engine_version,
                request.engine_image,
                request.engine_flashinfer,
                request.engine_offline,
                request.engine_eager,
                request.engine_compile_cached,
            )
            self._engines[gpu.name] = engine_model(self.request.engine, build, gpu)
        return self._engines[gpu.name]

    def weights_per_gpu(
        self, engine: EngineModel, gpu: GpuType, tensor_parallel: int, stage: PipelineStage
    ) -> int:
        """Weights on one GPU of a stage; GPU types share it unless the engine pads experts per GPU."""
        request = self.request
        if request.weights_bytes_override is not None:
            return math.ceil(request.weights_bytes_override / (tensor_parallel * request.pipeline_parallel))
        padding = engine.expert_padding(gpu, self.weights)
        resident = engine.resident_weights(gpu, self.weights)
        key = (tensor_parallel, padding, resident, stage.index, stage.count)
        if key not in self._weights_per_gpu:
            per_gpu = weights_bytes(request.model, resident, tensor_parallel, padding, stage).per_gpu
            self._weights_per_gpu[key] = per_gpu
        return (
            self._weights_per_gpu[key]
            + engine.loaded_buffer_bytes(request.model, self.weights)
            + engine.derived_weight_bytes(request.model, resident, tensor_parallel, stage)
            + engine.weight_rounding_bytes(request.model, resident, tensor_parallel, stage)
        )

    def may_fit(self, gpu: GpuType, tensor_parallel: int, max_seq_len: int) -> bool:
        """False where arithmetic on the weights and the KV cache alone rules the option out, before any
        overhead or batch is computed: a stage's weights leave no room on `gpu`, or, where the engine's
        KV pool is all the memory the fraction leaves free, a stage's weights plus the least KV cache
        the target can take exceed what the largest allowed fraction gives. (Fitting means the pool
        holds the target's sequences, and that pool is the usable memory less weights and overhead.)"""
        request, engine = self.request, self.engine_on(gpu)
        total = request.gpu_memory_bytes_override or gpu.cuda_total_bytes
        usable = engine.usable_bytes(total, request.memory_fraction or request.max_memory_fraction)
        for stage in self.stages:
            weights = self.weights_per_gpu(engine, gpu, tensor_parallel, stage)
            least_kv = self.least_kv_bytes(engine, tensor_parallel, stage, max_seq_len)
            if weights >= total or (least_kv is not None and weights + least_kv > usable):
                return False
        return True

    def least_kv_bytes(
        self, engine: EngineModel, tensor_parallel: int, stage: PipelineStage, max_seq_len: int
    ) -> int | None:
        """The least KV cache the target concurrency takes on a GPU of `stage`: blocks of one token and
        one batched token, the least any block size and batch limit give (`KvLayout.bytes_per_sequence`).
        None where the engine's pool is not simply the memory left free (TGI's warm-up rule keeps a
        share of it, a release's figure, and adds its own blocks back)."""
        arch = self.request.model
        paging = (
            engine.mla_head_size(arch),
            engine.mla_latent_alignment(arch, self.weights.compute_bytes),
            engine.larger_group_below,
            engine.sliding_window_paged,
        )
        key = (tensor_parallel, stage.index, stage.count, max_seq_len, *paging)
        if key not in self._least_kv:
            layout = self.layout(engine, tensor_parallel, stage, block=1)
            self._least_kv[key] = self.request.concurrency * layout.bytes_per_sequence(max_seq_len, 1), layout
        least, layout = self._least_kv[key]
        return least if engine.free_memory_rule(layout, max_seq_len, 1).keeps_all else None

    def valid_tensor_parallel(self, count: int) -> bool:
        """Engines split attention heads evenly; KV heads split evenly or replicate evenly."""
        arch = self.request.model
        if arch.num_attention_heads % count:
            return False
        if arch.is_mla:
            return True
        kv = arch.num_kv_heads
        return kv % count == 0 if kv >= count else count % kv == 0

    def evaluate(self, gpu: GpuType, tensor_parallel: int, max_seq_len: int | None = None) -> _Evaluation:
        """The request on `tensor_parallel` x `pipeline_parallel` GPUs of `gpu`: the bottleneck stage's
        figures (one stage without pipeline parallelism), all stages sharing one memory fraction.
        `max_seq_len` replaces the request's, for a suggestion."""
        stages = self._stages(gpu, tensor_parallel, max_seq_len)
        return self._at(stages, self._fraction(stages))

    def fitting(
        self, gpu: GpuType, tensor_parallel: int, max_seq_len: int | None = None
    ) -> _Evaluation | None:
        """`evaluate`'s result if the option fits, else None, said by the first figure that shows it:
        weights, or weights and the least KV cache, that leave no room (`may_fit`), then a fraction
        needed above every stage's cap. What a suggestion and a search for the cheapest fit ask; most
        options are answered before their overhead, or at least before the batch arithmetic."""
        if not self.may_fit(gpu, tensor_parallel, max_seq_len or self.request.max_seq_len):
            return None
        stages = self._stages(gpu, tensor_parallel, max_seq_len)
        fraction = self._fraction(stages)
        if self.request.memory_fraction is None and fraction > max(stage.cap for stage in stages):
            return None  # fitting needs the fraction within the bottleneck stage's cap
        evaluation = self._at(stages, fraction)
        return evaluation if evaluation.fits else None

    def _stages(self, gpu: GpuType, tensor_parallel: int, max_seq_len: int | None) -> list[_Stage]:
        length = max_seq_len or self.request.max_seq_len
        return [_Stage(self, gpu, tensor_parallel, stage, length) for stage in self.stages]

    def _fraction(self, stages: list[_Stage]) -> float:
        """The user's fixed fraction, or the largest any stage needs (all stages run at one)."""
        fraction = self.request.memory_fraction
        return max(stage.needed_fraction() for stage in stages) if fraction is None else fraction

    @staticmethod
    def _at(stages: list[_Stage], fraction: float) -> _Evaluation:
        return min((stage.at(fraction) for stage in stages), key=_BOTTLENECK)

    def layout(self, engine: EngineModel, tensor_parallel: int, stage: PipelineStage, block: int) -> KvLayout:
        """The KV layout on a GPU of `stage`, as `engine` pages it."""
        return _paged_layout(
            engine, self.request.model, self.weights, self.kv_element_bytes, tensor_parallel, stage, block
        )

    def shape(
        self,
        engine: EngineModel,
        tensor_parallel: int,
        stage: PipelineStage,
        max_seq_len: int,
        block: int,
        batched: int,
        graph_seqs: int | None,
    ) -> _StageShape:
        """A stage's KV layout and overhead: the same for every GPU type that runs the same engine model
        with the same batch limits, and for every later request of the same model and target, so
        computed once for them all (`_stage_shape`)."""
        request = self.request
        return _stage_shape(
            engine,
            request.model,
            self.weights,
            self.kv_element_bytes,
            request.overhead_bytes_override,
            request.concurrency,
            tensor_parallel,
            stage,
            max_seq_len,
            block,
            batched,
            graph_seqs,
        )


class _Stage:
    """One pipeline stage's GPUs (all GPUs without pipeline parallelism): what does not depend on the
    fraction, and the evaluation at a fraction."""

    def __init__(
        self,
        evaluator: _Evaluator,
        gpu: GpuType,
        tensor_parallel: int,
        stage: PipelineStage,
        max_seq_len: int,
    ) -> None:
        request, engine, arch = evaluator.request, evaluator.engine_on(gpu), evaluator.request.model
        self.request, self.engine, self.evaluator = request, engine, evaluator
        self.gpu, self.tensor_parallel, self.stage = gpu, tensor_parallel, stage
        self.total = request.gpu_memory_bytes_override or gpu.cuda_total_bytes
        fraction = request.memory_fraction or request.max_memory_fraction
        self.defaults = engine.default_scheduling(
            self.total, gpu, max_seq_len, arch, tensor_parallel, fraction
        )
        self.block = request.block_size or self.defaults.block_size_tokens
        self.batched = request.max_num_batched_tokens or self.defaults.max_num_batched_tokens
        self.weights_per_gpu = evaluator.weights_per_gpu(engine, gpu, tensor_parallel, stage)
        # The batch limit the engine starts with where the request fixes it (a user's limit, or the default
        # under a fixed fraction); else the plan picks it, and the CUDA graphs follow the limit it picks.
        graph_seqs = request.max_num_seqs or (
            self.defaults.max_num_seqs if request.memory_fraction is not None else None
        )
        shape = evaluator.shape(
            engine, tensor_parallel, stage, max_seq_len, self.block, self.batched, graph_seqs
        )
        self.layout, self.sequence_bytes = shape.layout, shape.sequence_bytes
        self.curve, self.target_overhead = shape.curve, shape.target_overhead
        self.outside = self.target_overhead.outside_bytes
        # An engine that sizes its KV cache after warming up keeps a margin free beyond what the fraction
        # leaves: the plan writes no fraction above where that margin starts to bind.
        kept = self.curve.kept_free_bytes(request.concurrency)
        self.cap = min(request.max_memory_fraction, _floor_fraction(1 - (self.outside + kept) / self.total))
        # Per GPU, inside the fraction, for the target's max-length sequences.
        self.required_bytes = self.weights_per_gpu + shape.target_budget_bytes

    def needed_fraction(self) -> float:
        return _ceil_fraction(
            self.required_bytes / self.engine.usable_bytes(self.total, 1.0, self.tensor_parallel)
        )

    def _batch_limit(self, usable: int, fixed: bool) -> int:
        """The batch limit the engine starts with: the request's or the default under a fixed fraction,
        else the largest the fraction's memory holds."""
        request = self.request
        if fixed:
            return request.max_num_seqs or self.defaults.max_num_seqs
        upper = max(usable // self.sequence_bytes, 0)
        if request.max_num_seqs is not None:  # the user's batch limit bounds what the plan may use
            upper = min(upper, request.max_num_seqs)
        budget = usable - self.weights_per_gpu
        return max(self.curve.largest_batch(budget, self.sequence_bytes, upper, KV_SAFETY_MARGIN), 1)

    def at(self, fraction: float) -> _Evaluation:
        """What the engine gets at `fraction` (fixed by the user, or the one the plan needs)."""
        request, target = self.request, self.request.concurrency
        fixed = request.memory_fraction is not None
        usable = self.engine.usable_bytes(
            self.total, fraction if fixed else min(fraction, self.cap), self.tensor_parallel
        )
        num_seqs = self._batch_limit(usable, fixed)
        # Where the engine keeps a margin free beyond the fraction (its KV cache sized after warm-up), the
        # cache gets no more than what the rest of the GPU leaves less that margin; with the limit that
        # smaller budget holds, the margin only shrinks.
        kept = self.curve.kept_free_bytes(num_seqs)
        if kept and usable > (ceiling := self.total - self.outside - kept):
            usable = ceiling
            num_seqs = self._batch_limit(usable, fixed)
        pool = self.curve.pool_bytes(usable - self.weights_per_gpu, num_seqs)
        max_concurrency = KV_SAFETY_MARGIN.promised(pool) // self.sequence_bytes
        max_batch = min(num_seqs, max_concurrency)
        fits = max_batch >= target and (fixed or fraction <= self.cap)
        return _Evaluation(
            gpu=self.gpu,
            tensor_parallel=self.tensor_parallel,
            pipeline_parallel=request.pipeline_parallel,
            engine=self.engine,
            weights=self.evaluator.weights,
            gpu_total_bytes=self.total,
            weights_bytes_per_gpu=self.weights_per_gpu,
            layout=self.layout,
            max_batched_tokens=self.batched,
            sequence_bytes=self.sequence_bytes,
            overhead=self.target_overhead,
            fraction=fraction,
            fraction_cap=self.cap,
            usable_bytes=usable,
            max_batch=max_batch,
            max_concurrency=max_concurrency,
            target_kv_bytes=target * self.sequence_bytes,
            fits=fits,
            required_bytes=self.required_bytes,
            kv_pool_bytes=pool,
        )


@dataclass(frozen=True)
class _StageShape:
    """What a stage's GPUs hold per sequence and spend besides, whatever their memory."""

    layout: KvLayout
    sequence_bytes: int
    curve: OverheadCurve
    target_overhead: Overhead  # at the target concurrency
    # What the target's sequences need besides the weights: overhead and the KV pool that holds them with
    # the safety margin on it.
    target_budget_bytes: int


# Bounded: a whole-field plan builds about 40 shapes, a pinned one one or two, so this keeps the last few
# dozen distinct requests' (the webhook and the reconciler plan the same specs again and again).
@functools.lru_cache(maxsize=1024)
def _stage_shape(
    engine: EngineModel,
    arch: ModelArchitecture,
    weights: WeightFormat,
    kv_element_bytes: int,
    overhead_bytes_override: int | None,
    concurrency: int,
    tensor_parallel: int,
    stage: PipelineStage,
    max_seq_len: int,
    block: int,
    batched: int,
    graph_seqs: int | None,
) -> _StageShape:
    """The shape on the engine model's GPU, keyed on all it depends on, as arguments (cheaper to key on
    than a record built per lookup): equal arguments give equal shapes, whatever the request, GPU type
    or plan they come from (the engine model is one object per release and GPU). It is the curve of
    GPU types whose engine behaves alike and of any target concurrency (`_shared_shape`), with this
    GPU's own terms and the target's figures put in."""
    shared = _shared_shape(
        _alike(engine),
        arch,
        weights,
        kv_element_bytes,
        overhead_bytes_override,
        tensor_parallel,
        stage,
        max_seq_len,
        block,
        batched,
        graph_seqs,
    )
    curve = shared.curve
    if overhead_bytes_override is None:
        if (on_gpu := shared.curves_on_gpu.get(engine)) is None:
            on_gpu = _on_gpu(curve, shared.engine, engine, arch, weights, stage.is_last)
            shared.curves_on_gpu[engine] = on_gpu
        curve = on_gpu
    target_kv = KV_SAFETY_MARGIN.pool_for(concurrency * shared.sequence_bytes)
    return _StageShape(
        shared.layout,
        shared.sequence_bytes,
        curve,
        curve.at(concurrency),
        curve.budget_for(target_kv, concurrency),
    )


# What `engine_model` sets per GPU type on engine models that are otherwise alike. A stage's KV layout and
# overhead curve read them only in the curve's CUDA context terms and its sampler's per-program buffer
# (`_on_gpu`), so GPU types that run the same release the same way share the rest, the costly part.
_GPU_TERMS = frozenset({"cuda_context_bytes", "sm_count"})
# The first engine model seen of each behaviour; as many as the release tables' rows and builds.
_FIRST_ALIKE: dict[tuple[object, ...], EngineModel] = {}


@functools.lru_cache(maxsize=1024)
def _alike(engine: EngineModel) -> EngineModel:
    """The engine model that computes the shared shapes of those that differ from `engine` only in
    their GPU terms (engine models are immutable once made, see engine_model)."""
    behaviour = (type(engine), *sorted((n, v) for n, v in vars(engine).items() if n not in _GPU_TERMS))
    return _FIRST_ALIKE.setdefault(behaviour, engine)


@dataclass(frozen=True)
class _SharedShape:
    engine: EngineModel  # the one that computed the curve
    layout: KvLayout
    sequence_bytes: int
    curve: OverheadCurve
    # The curve as each GPU type alike computes it (`_on_gpu`), kept as it holds for any target: a
    # request with a new concurrency reuses it instead of copying the curve again.
    curves_on_gpu: dict[EngineModel, OverheadCurve] = field(default_factory=dict, compare=False)


# As bounded as the shapes, of which a whole-field plan has over twice as many (32 to 14).
@functools.lru_cache(maxsize=1024)
def _shared_shape(
    engine: EngineModel,
    arch: ModelArchitecture,
    weights: WeightFormat,
    kv_element_bytes: int,
    overhead_bytes_override: int | None,
    tensor_parallel: int,
    stage: PipelineStage,
    max_seq_len: int,
    block: int,
    batched: int,
    graph_seqs: int | None,
) -> _SharedShape:
    """What of a shape holds for any target concurrency and, as `engine` is `_alike`'s, for every GPU type
    alike: `_stage_shape`'s arguments but those two."""
    layout = _paged_layout(engine, arch, weights, kv_element_bytes, tensor_parallel, stage, block)
    if overhead_bytes_override is not None:
        override = overhead_bytes_override  # a known figure, all inside the fraction
        curve = OverheadCurve(0, 0, 0, 0.0, override, 0, activation_inside=True)
    else:
        curve = engine.overhead_curve(
            arch,
            weights,
            tensor_parallel,
            batched,
            samples=stage.is_last,
            embeds=stage.is_first,
            layers=stage.layers,
            max_num_seqs=graph_seqs,
            kv_cache_fp8=kv_element_bytes == 1,
        )
    free_memory = engine.free_memory_rule(layout, max_seq_len, batched)
    if free_memory != curve.free_memory:  # most engines keep all of it: no copy per stage
        curve = replace(curve, free_memory=free_memory)
    return _SharedShape(engine, layout, layout.bytes_per_sequence(max_seq_len, batched), curve)


def _on_gpu(
    curve: OverheadCurve,
    computed_on: EngineModel,
    engine: EngineModel,
    arch: ModelArchitecture,
    weights: WeightFormat,
    samples: bool,
) -> OverheadCurve:
    """`curve`, computed by `computed_on`, as `engine` (alike but for its GPU terms) computes it: the CUDA
    context counts inside or beside the fraction (EngineModel.overhead_curve), the sampler's buffer is
    per streaming multiprocessor."""
    if computed_on is engine:
        return curve
    sampler = engine.sampler_program_buffer(arch, weights) if samples else NO_PROGRAM_BUFFER
    if engine.cuda_context_inside_fraction:
        non_torch = curve.non_torch_bytes - computed_on.cuda_context_bytes + engine.cuda_context_bytes
        return replace(curve, non_torch_bytes=non_torch, sampler_buffer=sampler)
    return replace(curve, outside_bytes=engine.cuda_context_bytes, sampler_buffer=sampler)


def _paged_layout(
    engine: EngineModel,
    arch: ModelArchitecture,
    weights: WeightFormat,
    kv_element_bytes: int,
    tensor_parallel: int,
    stage: PipelineStage,
    block: int,
) -> KvLayout:
    layout = kv_layout(
        arch,
        kv_element_bytes,
        tensor_parallel,
        block,
        stage,
        engine.mla_head_size(arch),
        engine.larger_group_below,
        engine.mla_latent_alignment(arch, weights.compute_bytes),
    )
    if engine.sliding_window_paged or not layout.num_sliding_window_layers:
        return layout
    return replace(layout, num_sliding_window_layers=0)


def _ceil_fraction(value: float) -> float:
    """Round a fraction up to the engines' two decimals, so the rounded value still fits."""
    return math.ceil(round(value * 100, 6)) / 100


def _floor_fraction(value: float) -> float:
    return math.floor(round(value * 100, 6)) / 100


def _largest(predicate: Callable[[int], bool], upper: int) -> int:
    """The largest n in [0, upper] with predicate(n), for a predicate true up to some point."""
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        if predicate(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _counts(request: PlanRequest) -> tuple[int, ...]:
    """Tensor-parallel sizes to evaluate: the usual powers of two, and a pinned count besides."""
    if request.gpu_count is not None and request.gpu_count not in TENSOR_PARALLEL_SIZES:
        return (*TENSOR_PARALLEL_SIZES, request.gpu_count)
    return TENSOR_PARALLEL_SIZES


def _cheapest(evaluations: Iterable[_Evaluation]) -> _Evaluation | None:
    fitting = [e for e in evaluations if e.fits]
    return min(fitting, key=lambda e: (e.price, e.tensor_parallel, e.fraction), default=None)


def _up_to_cheapest_fit(evaluator: _Evaluator, options: list[tuple[GpuType, int]]) -> list[_Evaluation]:
    """The options that fit, in ascending price, up to the first that fits and those priced the same:
    all `_cheapest` needs from them, so a refusal's "other GPU" suggestion costs a few evaluations,
    not the whole field's."""
    fitting: list[_Evaluation] = []
    for gpu, count in sorted(options, key=lambda option: option[0].price_per_hour * option[1]):
        if fitting and gpu.price_per_hour * count > fitting[0].price:
            break
        if (evaluation := evaluator.fitting(gpu, count)) is not None:
            fitting.append(evaluation)
    return fitting


def _closest(evaluations: Iterable[_Evaluation]) -> _Evaluation:
    """Among options that do not fit, the one that misses by the smallest share of what it offers."""
    return min(evaluations, key=lambda e: (e.required_bytes / max(e.usable_bytes, 1), e.price))


def plan(
    request: PlanRequest, gpus: Sequence[tuple[GpuType, int]] | None = None, *, alternatives: bool = True
) -> Plan:
    """Plan one deployment: choose GPUs, fraction and max batch, or say why nothing fits.

    `gpus` are the candidates, each with the most GPUs one node offers for a replica (one pipeline
    stage): what a cluster holds. Default: every catalog type at any count. Without `alternatives` the
    plan lists no field and, for a pinned GPU type that fits, evaluates only that type (at the pinned
    count, if any): what a request path needs. A refusal still weighs more of the same GPUs and the
    other types for its suggestions, asking each only whether it fits (`_Evaluator.fitting`)."""
    arch = request.model
    if request.pipeline_parallel > arch.num_layers:  # a stage without layers: nothing to size it by
        raise SizingError(
            "pipeline-parallel",
            f"{request.pipeline_parallel} pipeline stages cannot split {arch.name}'s "
            f"{arch.num_layers} layers (at most {arch.num_layers} stages)",
        )
    evaluator = _Evaluator(request)
    if arch.max_position_embeddings and request.max_seq_len > arch.max_position_embeddings:
        raise SizingError(
            "max-seq-len",
            f"{request.max_seq_len} tokens exceeds {arch.name}'s context window "
            f"({arch.max_position_embeddings} tokens, max_position_embeddings)",
        )
    if request.gpu_count is not None and not evaluator.valid_tensor_parallel(request.gpu_count):
        raise SizingError(
            "gpu-count",
            f"{request.gpu_count} GPUs cannot split {arch.name}'s {arch.num_attention_heads} attention heads "
            f"and {arch.num_kv_heads} KV heads evenly (valid: "
            f"{', '.join(str(n) for n in TENSOR_PARALLEL_SIZES if evaluator.valid_tensor_parallel(n))})",
        )
    offered = gpus if gpus is not None else [(gpu, MAX_GPUS_PER_REPLICA) for gpu in gpu_catalog().values()]
    assumptions = []
    if gpus is None and request.gpu is None and request.gpu_memory_bytes_override is not None:
        # Only the memory is known: no catalog type is guessed from it.
        memory = request.gpu_memory_bytes_override
        unknown = unknown_gpu(memory)
        offered = [(unknown, MAX_GPUS_PER_REPLICA)]
        assumptions.append(
            f"GPU type not given, only its memory ({format_gib(memory)}): taken as "
            f"compute capability {unknown.compute_capability}, which leaves the smaller KV cache where it "
            "decides: MXFP4 experts padded to 256 x 256, vLLM's V1 engine and its larger default batch "
            "where the memory allows it, TGI's warm-up sized for the fastest card its launcher knows; and "
            f"{unknown.multiprocessors} streaming multiprocessors, the most of any GPU, for vLLM's sampler "
            "scratch sized per SM; its CUDA context is taken as the "
            f"{format_gib(unknown.cuda_context_bytes)} measured on an H100"
        )

    def options(wanted: Callable[[GpuType], bool]) -> list[tuple[GpuType, int]]:
        return [
            (gpu, count)
            for gpu, per_node in offered
            if wanted(gpu)
            for count in _counts(request)
            if count <= per_node and evaluator.valid_tensor_parallel(count)
        ]

    pinned = request.gpu
    if pinned is not None and not alternatives:
        field = [
            evaluator.evaluate(gpu, count)
            for gpu, count in options(lambda gpu: gpu.name == pinned.name)
            if request.gpu_count in (None, count)
        ]
    elif not alternatives:
        # Only the choice is wanted: options in ascending price up to the cheapest fit decide it as the
        # whole field would; all of them are evaluated only when none fits (the closest miss is reported).
        every = options(lambda gpu: True)
        wanted = [option for option in every if request.gpu_count in (None, option[1])]
        field = _up_to_cheapest_fit(evaluator, wanted) or [evaluator.evaluate(*option) for option in every]
    else:
        field = [evaluator.evaluate(*option) for option in options(lambda gpu: True)]
    allowed = [
        e
        for e in field
        if (pinned is None or e.gpu.name == pinned.name)
        and (request.gpu_count is None or e.tensor_parallel == request.gpu_count)
    ]
    if not allowed:  # the caller checks a pinned type against its candidates; a custom count can miss
        raise SizingError("gpu-count", "no valid tensor-parallel size for this model on the GPUs offered")
    chosen = _cheapest(allowed)
    fits = chosen is not None
    if chosen is None:
        chosen = _closest(allowed)
    reasons = [] if fits else [_shortfall_reason(chosen, request)]
    if not fits and pinned is not None and not alternatives:
        if request.gpu_count is not None:  # the "more of the same GPUs" suggestion: the fewest that fit
            more = [
                (gpu, count)
                for gpu, count in options(lambda gpu: gpu.name == pinned.name)
                if count > request.gpu_count
            ]
            field += _up_to_cheapest_fit(evaluator, more)
        field += _up_to_cheapest_fit(evaluator, options(lambda gpu: gpu.name != pinned.name))
    suggestions = [] if fits else _suggestions(request, evaluator, chosen, field)
    return _to_plan(
        request, evaluator, chosen, fits, field if alternatives else [], reasons, suggestions, assumptions
    )


def _shortfall_reason(evaluation: _Evaluation, request: PlanRequest) -> str:
    """Why an option does not fit, in numbers a person can check."""
    e = evaluation
    gpus = f"{e.gpu_count} x {e.gpu.name}" if e.gpu_count > 1 else e.gpu.name
    needs = (
        f"needs {format_gib(e.required_bytes)} per GPU (weights {format_gib(e.weights_bytes_per_gpu)} + "
        f"KV cache {format_gib(e.target_kv_bytes)} for {request.concurrency} x {request.max_seq_len} "
        "tokens + "
        f"runtime overhead {format_gib(e.overhead.inside_bytes)} + "
        f"safety margin {format_gib(KV_SAFETY_MARGIN.pool_for(e.target_kv_bytes) - e.target_kv_bytes)})"
    )
    fraction = request.memory_fraction if request.memory_fraction is not None else e.fraction_cap
    usable = e.engine.usable_bytes(e.gpu_total_bytes, fraction, e.tensor_parallel)
    offers = (
        f"{gpus} offers {format_gib(usable)} per GPU at memory "
        f"fraction {fraction:.2f} of {format_gib(e.gpu_total_bytes)}"
    )
    if e.max_batch < 1:
        holds = "not one max-length sequence fits beside the weights"
    else:
        holds = (
            f"that holds {e.max_batch} concurrent {request.max_seq_len}-token sequences, "
            f"not {request.concurrency}"
        )
    return f"{needs}; {offers}; {holds}"


def _suggestions(
    request: PlanRequest, evaluator: _Evaluator, chosen: _Evaluation, field: list[_Evaluation]
) -> list[Suggestion]:
    """The nearest changes that fit: shorter sequences, fewer requests, fp8 KV, lower precision, more or
    larger GPUs. Each is checked, not guessed: a shorter length on the evaluator at hand (its weights
    and engine models reused), other formats on one option each, GPUs from the field."""
    gpu, count = chosen.gpu, chosen.tensor_parallel
    out: list[Suggestion] = []

    def fits_with(**changes: Any) -> bool:
        try:
            return evaluator.variant(**changes).fitting(gpu, count) is not None
        except SizingError:
            return False

    def fits_at(length: int) -> bool:
        return length > 0 and evaluator.fitting(gpu, count, max_seq_len=length) is not None

    # Where not even one token fits (the weights fill the GPUs), one check says so, not a search.
    longest = _largest(fits_at, upper=request.max_seq_len - 1) if fits_at(1) else 0
    if longest > 0:
        out.append(
            Suggestion(
                changes={"workload.maxSequenceLength": str(longest)},
                text=f"max sequence length {longest} instead of {request.max_seq_len}",
            )
        )
    if chosen.max_batch >= 1:
        out.append(
            Suggestion(
                changes={"workload.concurrency": str(chosen.max_batch)},
                text=f"concurrency {chosen.max_batch} instead of {request.concurrency}",
            )
        )
    if request.kv_cache_dtype is not KvCacheDtype.FP8 and fits_with(kv_cache_dtype=KvCacheDtype.FP8):
        out.append(Suggestion(changes={"model.kvCacheDtype": "fp8"}, text="an fp8 KV cache"))
    if request.model.quantization is None and request.weights_bytes_override is None:
        for lower in (Precision.FP8, Precision.INT4):
            if lower.value != evaluator.weights.label and fits_with(precision=lower):
                out.append(
                    Suggestion(changes={"model.precision": lower.value}, text=f"{lower.value} weights")
                )
                break
    same_type_more = [e for e in field if e.gpu.name == gpu.name and e.tensor_parallel > count and e.fits]
    if same_type_more and request.gpu_count is not None:
        more = min(same_type_more, key=lambda e: e.tensor_parallel)
        out.append(
            Suggestion(
                changes={"gpu.count": str(more.tensor_parallel)},
                text=f"{more.tensor_parallel} x {gpu.name} (memory fraction {more.fraction:.2f})",
            )
        )
    other = _cheapest(e for e in field if e.gpu.name != gpu.name)
    if other is not None:
        out.append(
            Suggestion(
                changes={"gpu.type": other.gpu.name, "gpu.count": str(other.tensor_parallel)},
                text=f"{other.tensor_parallel} x {other.gpu.name} (memory fraction {other.fraction:.2f}, "
                f"max batch {other.max_batch})",
            )
        )
    return out


def _candidate(e: _Evaluation) -> Candidate:
    return Candidate(
        gpu_type=e.gpu.name,
        gpu_count=e.gpu_count,
        fits=e.fits,
        memory_fraction=e.fraction,
        max_batch=e.max_batch,
        price_per_hour=round(e.price, 4),
        gpu_memory_bytes=e.gpu_total_bytes,
        weights_bytes_per_gpu=e.weights_bytes_per_gpu,
        kv_cache_bytes_per_gpu=e.target_kv_bytes,
        overhead_bytes_per_gpu=e.overhead.inside_bytes,
        required_bytes_per_gpu=e.required_bytes,
    )


# bf16 needs compute capability 8.0: below it vLLM refuses to start with it ("Bfloat16 is only supported on
# GPUs with compute capability of at least 8.0", vllm/platforms/cuda.py@v0.11.0, check_if_supports_dtype).
BF16_COMPUTE_CAPABILITY = 8


def _runs_fp16(weights: WeightFormat, gpu: GpuType) -> bool:
    """Whether bf16 compute must run as fp16 on `gpu` (the same bytes: the memory plan holds)."""
    return weights.compute_dtype == "bf16" and gpu.compute_capability_major < BF16_COMPUTE_CAPABILITY


def _fp16_assumption(weights: WeightFormat, gpu: GpuType) -> tuple[str, ...]:
    """What the plan says when the engines are told fp16 for a bf16 model."""
    if not _runs_fp16(weights, gpu):
        return ()
    return (
        f"bf16 needs compute capability {BF16_COMPUTE_CAPABILITY}.0 and the {gpu.name} has "
        f"{gpu.compute_capability}: the engines run the model in fp16 (--dtype float16), the same bytes, so "
        "the memory plan holds; a model trained in bf16 can overflow fp16's range",
    )


def _engine_args(evaluator: _Evaluator, chosen: _Evaluation) -> dict[str, list[str]]:
    """Arguments for each engine on the chosen GPUs, each engine's fraction computed by its own model."""
    request = evaluator.request
    weights = evaluator.weights
    if _runs_fp16(weights, chosen.gpu):
        weights = replace(weights, compute_dtype="fp16")
    args: dict[str, list[str]] = {}
    for engine in Engine:
        evaluation = (
            chosen
            if engine is request.engine
            else evaluator.variant(engine=engine).evaluate(chosen.gpu, chosen.tensor_parallel)
        )
        default_block = evaluation.engine.default_block_size
        launch = Launch(
            model=request.model_source,
            tensor_parallel=evaluation.tensor_parallel,
            pipeline_parallel=evaluation.pipeline_parallel,
            memory_fraction=request.memory_fraction or min(evaluation.fraction, evaluation.fraction_cap),
            max_model_len=request.max_seq_len,
            max_num_seqs=max(evaluation.max_batch, 1),
            weights=weights,
            kv_cache_fp8=request.kv_cache_dtype is KvCacheDtype.FP8,
            max_num_batched_tokens=request.max_num_batched_tokens,
            block_size_tokens=request.block_size if request.block_size not in (None, default_block) else None,
            eager=request.engine_eager,
        )
        args[engine.value] = evaluation.engine.arguments(launch)
    return args


def _to_plan(
    request: PlanRequest,
    evaluator: _Evaluator,
    chosen: _Evaluation,
    fits: bool,
    field: list[_Evaluation],
    reasons: list[str],
    suggestions: list[Suggestion],
    assumptions: list[str],
) -> Plan:
    arch, tp, gpus = request.model, chosen.tensor_parallel, chosen.gpu_count
    unsplit_layout = kv_layout(
        arch,
        evaluator.kv_element_bytes,
        1,
        chosen.layout.block_size_tokens,
        None,
        chosen.engine.mla_head_size(arch),
        mla_latent_alignment=chosen.engine.mla_latent_alignment(arch, evaluator.weights.compute_bytes),
    )
    kv_budget = chosen.kv_budget_bytes
    fraction = request.memory_fraction if request.memory_fraction is not None else chosen.fraction
    return Plan(
        fits=fits,
        model=arch.name,
        attention=arch.attention_kind,
        parameters=arch.parameter_count,
        weights_format=evaluator.weights.label,
        engine=request.engine,
        engine_release=chosen.engine.release_label,
        assumptions=[
            *chosen.engine.assumptions,
            *chosen.engine.model_assumptions(arch),
            *assumptions,
            *_fp16_assumption(evaluator.weights, chosen.gpu),
        ],
        gpu_type=chosen.gpu.name,
        gpu_product=chosen.gpu.product,
        gpu_count=gpus,
        tensor_parallel=tp,
        pipeline_parallel=chosen.pipeline_parallel,
        memory_fraction=fraction,
        memory_fraction_cap=chosen.fraction_cap,
        max_batch=chosen.max_batch,
        max_model_len=request.max_seq_len,
        concurrency=request.concurrency,
        weights_bytes=chosen.weights_bytes_per_gpu * gpus,
        weights_bytes_per_gpu=chosen.weights_bytes_per_gpu,
        kv_bytes_per_token=unsplit_layout.bytes_per_token,
        kv_bytes_per_token_per_gpu=chosen.layout.bytes_per_token,
        kv_cache_bytes=chosen.target_kv_bytes * gpus,
        kv_cache_bytes_per_gpu=chosen.target_kv_bytes,
        kv_capacity_tokens=chosen.engine.reported_kv_tokens(
            chosen.layout, kv_budget, request.max_seq_len, chosen.max_batched_tokens, request.model
        ),
        kv_capacity_bytes_per_gpu=max(kv_budget, 0)
        // chosen.layout.bytes_per_group_block
        * chosen.layout.bytes_per_group_block,
        kv_safety_margin_bytes_per_gpu=max(chosen.kv_pool_bytes, 0) - kv_budget,
        max_concurrency=chosen.max_concurrency,
        non_torch_bytes_per_gpu=chosen.overhead.non_torch_bytes,
        activation_bytes_per_gpu=chosen.overhead.activation_bytes,
        outside_bytes_per_gpu=chosen.overhead.outside_bytes,
        cuda_graph_bytes_per_gpu=chosen.overhead.cuda_graph_bytes,
        cuda_graphs_inside_fraction=chosen.engine.cuda_graphs_inside(arch, evaluator.weights),
        overhead_bytes=chosen.overhead.inside_bytes * gpus,
        overhead_bytes_per_gpu=chosen.overhead.inside_bytes,
        required_bytes=chosen.required_bytes * gpus,
        required_bytes_per_gpu=chosen.required_bytes,
        gpu_memory_bytes=chosen.gpu_total_bytes,
        engine_args=_engine_args(evaluator, chosen),
        alternatives=[_candidate(e) for e in field],
        reasons=reasons,
        suggestions=suggestions,
    )


__all__ = ["Candidate", "Plan", "PlanRequest", "Suggestion", "plan"]
