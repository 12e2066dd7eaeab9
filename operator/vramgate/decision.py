"""The admission decision: does this LLMDeployment fit its GPUs, and if not, what would?

One pure function, `decide`, shared by the validating webhook, the reconciler and `vramgate check`, so
a person gets the same verdict, in the same words, wherever they ask. It plans once; its message stands
alone (it names the resource) and speaks in numbers: what the spec needs per GPU, what the GPU offers at
the allowed memory fraction, and the nearest changes that would fit. Its `DecisionContext` carries what
the caller knows of the cluster (the GPU inventory, placement settings), so the verdict names the
cluster's GPUs rather than the whole catalog's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vramgate.images import ImagePolicy, official_engine
from vramgate.placement import (
    LEADER_WORKER_SET_SUFFIX,
    Inventory,
    Placement,
    PlacementMode,
    PlacementPolicy,
    Preference,
    place,
)
from vramgate.sizing import Plan, SizingError, Suggestion
from vramgate.sizing.engines import definition
from vramgate.sizing.units import format_gib
from vramgate.spec import (
    MAX_QUOTED_INPUT,
    NAME_RULE,
    LLMDeploymentSpec,
    SpecError,
    parse_spec,
    sizing_error_to_spec_error,
    to_plan_request,
)

SKIP_MEMORY_CHECK_ANNOTATION = "vramgate.dev/skip-memory-check"
LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"
MAX_LABEL_VALUE_LENGTH = 63
REVISION_HASH_DIGITS = 10  # the decimal form of a 32-bit hash


@dataclass(frozen=True)
class DecisionContext:
    """What the caller knows beyond the resource. The defaults decide as the CLI does offline: catalog
    placement, no escape hatch."""

    inventory: Inventory | None = None  # the cluster's GPU nodes; None: not known (catalog placement)
    placement: PlacementPolicy = field(default_factory=PlacementPolicy)
    skip_check_namespaces: tuple[str, ...] = ()  # where the skip-memory-check annotation is honoured
    lws_installed: bool | None = None  # the LeaderWorkerSet CRD is there; None: not known (offline)
    image_policy: ImagePolicy = field(default_factory=ImagePolicy)  # the chart's default: official images


@dataclass(frozen=True)
class Decision:
    """The verdict on one resource. `field` is the path to fix when the spec itself is wrong (not when
    it is merely too big); `plan` is there whenever the spec could be sized, fitting or not.
    `warnings` go back to kubectl with an admitted resource; `memory_check_skipped` holds the refusal
    that the skip-memory-check annotation overrode."""

    allowed: bool
    message: str
    field: str | None = None
    plan: Plan | None = None
    spec: LLMDeploymentSpec | None = None
    placement: Placement | None = None
    warnings: tuple[str, ...] = ()
    memory_check_skipped: str | None = None


def resource_name(resource: Mapping[str, Any]) -> str:
    """`namespace/name` as kubectl users say it (just the name outside a namespace)."""
    metadata = _metadata(resource)
    name = _printable(metadata.get("name") or f"{metadata.get('generateName', '')}<generated>")
    namespace = metadata.get("namespace")
    return f"{_printable(namespace)}/{name}" if namespace else name


def _printable(value: object) -> str:
    """A name as it may be printed: quoted when it holds a control character (an escape sequence or a
    carriage return would rewrite the terminal that shows the verdict)."""
    text = str(value)
    return text if text.isprintable() else repr(text)[:MAX_QUOTED_INPUT]


def _metadata(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resource's metadata; empty when it is missing or not an object (`_check_metadata` refuses
    the latter), so a message can still name the resource."""
    metadata = resource.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def decide(resource: Mapping[str, Any], context: DecisionContext | None = None) -> Decision:
    """Validate, size and place an LLMDeployment (a dict as the API server or a YAML file holds it)."""
    context = context or DecisionContext()
    subject = f"{resource.get('kind') or 'LLMDeployment'} {resource_name(resource)}"
    try:
        _check_metadata(resource.get("metadata"))
    except SpecError as error:
        return _invalid(subject, error)
    metadata = _metadata(resource)
    namespace = str(metadata.get("namespace") or "")
    skip = (metadata.get("annotations") or {}).get(SKIP_MEMORY_CHECK_ANNOTATION) == "true"
    if skip and not _skip_permitted(namespace, context):
        return _invalid(
            subject,
            SpecError(
                f"metadata.annotations[{SKIP_MEMORY_CHECK_ANNOTATION}]",
                f"not permitted in namespace {namespace or '(none)'}: the operator honours it only in the "
                "namespaces its setting VRAMGATE_SKIP_MEMORY_CHECK_NAMESPACES lists (chart value "
                "placement.skipMemoryCheckNamespaces; empty by default); remove the annotation or ask an "
                "administrator to add this namespace",
            ),
        )
    try:
        _check_name(resource.get("metadata"))
        spec = parse_spec(resource.get("spec"))
        image = spec.runtime.image_or_default()
        if (refusal := context.image_policy.refusal(image)) is not None:
            raise SpecError("spec.runtime.image", refusal)
        if (owner := official_engine(image)) not in (None, spec.runtime.engine):
            raise SpecError(
                "spec.runtime.image",
                f"{image!r} is {definition(owner).display_name}'s image, and spec.runtime.engine is "
                f"{spec.runtime.engine.value}: set the engine to {owner.value}, or use an image of "
                f"{definition(spec.runtime.engine).display_name}",
            )
        placed = place(
            to_plan_request(spec),
            preferences=_preferences(spec),
            pinned=Preference(spec.gpu.type, spec.gpu.count, spec.gpu.max_memory_fraction)
            if spec.gpu.type is not None
            else None,
            inventory=context.inventory,
            policy=context.placement,
            exclude=(namespace, str(metadata.get("name") or "")),
            alternatives=False,  # a decision reports its plan, not the table of every other option
        )
        sized, placement = placed.plan, placed.placement
        if placement.nodes > 1:
            _check_group_name(str(metadata.get("name") or ""), spec.replicas)
    except SizingError as error:
        if error.field == "gpu" and spec.gpu.preferences:
            return _invalid(subject, SpecError("spec.gpu.preferences", error.message))
        return _invalid(subject, sizing_error_to_spec_error(error))
    except SpecError as error:
        return _invalid(subject, error)
    refusal = _refusal(sized, placement, spec, context)
    if refusal is None:
        return Decision(
            True,
            f"{subject} fits: {_summary(sized, placement)}",
            plan=sized,
            spec=spec,
            placement=placement,
            warnings=(*placement.warnings, *placement.notes),
        )
    message = f"{subject} refused: {refusal}"
    if skip:
        skipped = f"memory check skipped ({SKIP_MEMORY_CHECK_ANNOTATION}): without it, {message}"
        return Decision(
            True,
            f"{subject} admitted without fitting: {refusal}",
            plan=sized,
            spec=spec,
            placement=placement,
            warnings=(skipped,),
            memory_check_skipped=refusal,
        )
    return Decision(False, message, plan=sized, spec=spec, placement=placement)


def _skip_permitted(namespace: str, context: DecisionContext) -> bool:
    return "*" in context.skip_check_namespaces or namespace in context.skip_check_namespaces


def _preferences(spec: LLMDeploymentSpec) -> list[Preference]:
    """spec.gpu.preferences, with gpu.count and gpu.maxMemoryFraction as each entry's defaults."""
    return [
        Preference(
            p.type,
            p.count if p.count is not None else spec.gpu.count,
            p.max_memory_fraction if p.max_memory_fraction is not None else spec.gpu.max_memory_fraction,
        )
        for p in spec.gpu.preferences or []
    ]


def _refusal(
    sized: Plan, placement: Placement, spec: LLMDeploymentSpec, context: DecisionContext
) -> str | None:
    """Why the resource cannot run as planned, or None when it can."""
    if placement.refusal is not None:
        return placement.refusal
    if not sized.fits:
        if placement.mode is PlacementMode.CLUSTER:
            return _cluster_shortfall(sized, placement, spec)
        return _shortfall(sized)
    if placement.nodes > 1:
        split = (
            f"{sized.model} needs {placement.nodes} nodes of {sized.tensor_parallel} x {sized.gpu_type} "
            f"(tensor parallel {sized.tensor_parallel} in a node, {placement.nodes} pipeline stages)"
        )
        if spec.runtime.engine.value != "vllm":
            return f"{split}; multi-node serving is generated for vllm only, not {spec.runtime.engine.value}"
        if context.lws_installed is False:
            return (
                f"{split}, which runs as a LeaderWorkerSet, but the {LWS_CRD} CustomResourceDefinition is "
                "missing from the cluster: install LeaderWorkerSet (github.com/kubernetes-sigs/lws) first"
            )
    return None


def _cluster_shortfall(sized: Plan, placement: Placement, spec: LLMDeploymentSpec) -> str:
    """The cluster's inventory first, then the closest option in numbers, then what would fit: changes
    within the cluster first, then a catalog type to add nodes of."""
    text = (
        f"the cluster has {placement.inventory}; none holds {sized.model} ({sized.weights_format}) for "
        f"{sized.concurrency} x {sized.max_model_len} tokens. Closest: {_shortfall(sized)}"
    )
    if spec.gpu.type is not None or spec.gpu.preferences:
        return text
    try:
        anywhere = place(to_plan_request(spec), policy=PlacementPolicy(mode=PlacementMode.CATALOG))
    except SizingError:
        return text
    if not anywhere.plan.fits:
        return text
    extra = anywhere.plan
    nodes = f"{anywhere.placement.nodes} nodes of " if anywhere.placement.nodes > 1 else "a node with "
    return (
        f"{text} Or add {nodes}{extra.tensor_parallel} x {extra.gpu_type} (memory fraction "
        f"{extra.memory_fraction:.2f}, max batch {extra.max_batch})."
    )


def _check_metadata(metadata: object) -> None:
    """What the API server guarantees of metadata, checked for a file or a hand-made review too: an
    object whose names are strings and whose labels and annotations map strings to strings."""
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise SpecError("metadata", f"must be an object with name and namespace (got {_quoted(metadata)})")
    for key in ("name", "generateName", "namespace"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise SpecError(f"metadata.{key}", f"must be a string (got {_quoted(metadata[key])})")
    for key in ("labels", "annotations"):
        entries = metadata.get(key)
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            raise SpecError(f"metadata.{key}", f"must be an object of strings (got {_quoted(entries)})")
        for name, value in entries.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise SpecError(f"metadata.{key}[{name}]", f"must be a string (got {_quoted(value)})")


def _quoted(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= MAX_QUOTED_INPUT else f"{shown[:MAX_QUOTED_INPUT]}..."


def _check_name(metadata: object) -> None:
    """The name names the Service, so it must be a DNS-1035 label (the CRD's root rule, offline too)."""
    if not NAME_RULE.holds(metadata):
        name = metadata.get("name") if isinstance(metadata, Mapping) else metadata
        raise SpecError("metadata.name", f"{NAME_RULE.message} (got {str(name)[:80]!r})")


def max_group_name_length(replicas: int) -> int:
    """The longest name a LeaderWorkerSet of `replicas` groups can start under. LeaderWorkerSet names its
    StatefulSets `<name>` and `<name>-<group>` (the worker set takes its leader pod's name,
    pkg/controllers/pod_controller.go@v0.9.0 of kubernetes-sigs/lws), and the StatefulSet controller labels
    every pod `controller-revision-hash: <statefulset>-<hash>`, a decimal FNV-32 hash of up to 10 digits
    (pkg/controller/history/controller_history.go@v1.34.4 of kubernetes/kubernetes). A label value over 63
    characters makes every worker pod invalid, while the LeaderWorkerSet itself is accepted."""
    last_group = str(max(replicas, 1) - 1)
    return MAX_LABEL_VALUE_LENGTH - len("-") - REVISION_HASH_DIGITS - len(f"-{last_group}")


def _check_group_name(name: str, replicas: int) -> None:
    """A multi-node model runs as a LeaderWorkerSet named after the resource (`manifests.workload_name`;
    see max_group_name_length)."""
    limit = max_group_name_length(replicas) - len(LEADER_WORKER_SET_SUFFIX)
    if len(name) > limit:
        raise SpecError(
            "metadata.name",
            f"{name!r} has {len(name)} characters; this model runs on several nodes as a LeaderWorkerSet, "
            f"and with {replicas} replicas its worker pods start only under names of at most {limit} "
            "characters (their controller-revision-hash label, "
            f"<name>{LEADER_WORKER_SET_SUFFIX}-<group>-<hash>, must stay within 63)",
        )


def _invalid(subject: str, error: SpecError) -> Decision:
    return Decision(False, f"{subject} refused: {error.field}: {error.message}", field=error.field)


def _gpus(sized: Plan) -> str:
    return f"{sized.gpu_count} x {sized.gpu_type}"


def _summary(sized: Plan, placement: Placement) -> str:
    where = _gpus(sized)
    if placement.nodes > 1:
        where = f"{placement.nodes} nodes of {sized.tensor_parallel} x {sized.gpu_type}"
    elif placement.hami_memory_mib is not None:
        where = f"a {placement.hami_memory_mib} MiB HAMi share of one {sized.gpu_type}"
    return (
        f"{where} at memory fraction {sized.memory_fraction:.2f}, max batch {sized.max_batch} "
        f"(target {sized.concurrency} x {sized.max_model_len} tokens); needs "
        f"{format_gib(sized.required_bytes_per_gpu)} per GPU "
        f"(weights {format_gib(sized.weights_bytes_per_gpu)} + "
        f"KV cache {format_gib(sized.kv_cache_bytes_per_gpu)} + overhead "
        f"{format_gib(sized.overhead_bytes_per_gpu)}) of {format_gib(sized.gpu_memory_bytes)}"
    )


def _shortfall(sized: Plan) -> str:
    """The planner's reason in numbers, then each nearest change with the field it sets."""
    reasons = "; ".join(sized.reasons)
    text = f"{sized.model} ({sized.weights_format}) does not fit {_gpus(sized)}: {reasons}."
    if not sized.suggestions:
        return text + " No single change of workload, precision or GPU makes it fit."
    changes = "; ".join(f"{suggestion.text} (set {_fields(suggestion)})" for suggestion in sized.suggestions)
    return f"{text} Nearest changes that fit: {changes}."


def _fields(suggestion: Suggestion) -> str:
    return ", ".join(f"spec.{path}: {value}" for path, value in suggestion.changes.items())
