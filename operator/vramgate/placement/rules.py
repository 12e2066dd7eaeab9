"""Placement: which GPUs a plan may use, given the cluster (or the catalog), and why others were passed.

The planner sizes; this module decides what it is offered. In `cluster` mode only GPU types that exist
are offered, each at most as many GPUs as one node holds (tensor parallelism stays inside a node), and
preferred where GPUs are free now. A model that no node holds is split into pipeline stages, one node
each. In `catalog` mode every catalog type (or an allow-list) is offered, for autoscaled clusters. Ordered
preferences are tried in turn; each one passed over is recorded with its reason in numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from vramgate.placement.inventory import GPU_RESOURCE, GpuTarget, Inventory, TargetKind
from vramgate.sizing import GpuType, Plan, PlanRequest, SizingError, find_gpu, gpu_catalog, plan
from vramgate.sizing.catalog import gpu_name_key
from vramgate.sizing.planner import TENSOR_PARALLEL_SIZES
from vramgate.sizing.units import MIB

CATALOG_NODE_GPUS = 8  # catalog mode: the GPUs a node of any type is assumed to hold (cloud 8-GPU shapes)
MAX_PIPELINE_STAGES = 16
HEADROOM = 0.10  # a max batch within 10% of the target is worth a warning
HAMI_STEP_MIB = 256  # HAMi shares are sized in steps of this


class PlacementMode(StrEnum):
    CLUSTER = "cluster"  # only GPU types present, with a node that has the GPUs free
    CATALOG = "catalog"  # any catalog type (or the allow-list): nodes appear on demand


@dataclass(frozen=True)
class Preference:
    """One entry of spec.gpu.preferences (or the pinned spec.gpu.type)."""

    type: str
    count: int | None = None
    max_memory_fraction: float | None = None


@dataclass(frozen=True)
class PlacementPolicy:
    """The operator's placement settings."""

    mode: PlacementMode | None = None  # None: cluster when any GPU node exists, else catalog
    catalog_types: tuple[str, ...] = ()  # catalog mode's allow-list; empty: every catalog type
    hami: bool = False  # HAMi shares GPUs: a one-GPU plan gets a memory share instead of a whole GPU


@dataclass(frozen=True)
class Skipped:
    index: int
    type: str
    reason: str


# A model over several nodes runs as a LeaderWorkerSet named `<resource><suffix>`, not `<resource>`: the
# set's controller gives it a headless Service of the set's own name, whose DNS records are the workers' way
# to their leader ($(LWS_LEADER_ADDRESS) is `<set>-<group>.<set>.<namespace>`), and takes any Service already
# of that name for it (kubernetes-sigs/lws@v0.9.0: pkg/controllers/leaderworkerset_controller.go,
# reconcileHeadlessServices; pkg/utils/controller/controller_utils.go, CreateHeadlessServiceIfNotExists;
# pkg/utils/pod/pod_utils.go, AddLWSVariables). The server's ClusterIP Service, named `<resource>`, gives
# pods no such records, so a set of that name would leave its workers unable to find their leader.
LEADER_WORKER_SET_SUFFIX = "-lws"


@dataclass(frozen=True)
class Placement:
    """Where a plan goes, and the record of how it was chosen."""

    mode: PlacementMode
    inventory: str  # the cluster's summary as seen (empty in catalog mode without nodes)
    resource: str = GPU_RESOURCE  # what each pod requests: nvidia.com/gpu or nvidia.com/mig-<profile>
    kind: TargetKind = TargetKind.GPU
    nodes: int = 1  # pods per replica: pipeline stages, one node each
    hami_memory_mib: int | None = None  # HAMi's per-container GPU memory, when the GPU is shared
    chosen: int | None = None  # index of the preference that won
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()
    refusal: str | None = None  # why no placement holds (the plan may still fit some GPU)
    notes: tuple[str, ...] = ()  # how unknown products and MIG profiles were sized

    def as_dict(self, plan: Plan | None) -> dict[str, object]:
        """The JSON `placement` object (CLI) and the status block share this shape."""
        return {
            "mode": self.mode.value,
            "inventory": self.inventory,
            "gpuType": plan.gpu_type if plan is not None else None,
            "resource": self.resource,
            "nodes": self.nodes,
            **({"hamiMemoryMiB": self.hami_memory_mib} if self.hami_memory_mib is not None else {}),
            **({"chosenPreference": self.chosen} if self.chosen is not None else {}),
            "skipped": [{"index": s.index, "type": s.type, "reason": s.reason} for s in self.skipped],
        }


@dataclass(frozen=True)
class Placed:
    plan: Plan
    placement: Placement


@dataclass
class _Field:
    """What one placement run may offer the planner."""

    mode: PlacementMode
    summary: str
    targets: list[GpuTarget] = field(default_factory=list)  # cluster mode
    catalog: list[GpuType] = field(default_factory=list)  # catalog mode

    def names(self) -> list[str]:
        return (
            [t.name for t in self.targets]
            if self.mode is PlacementMode.CLUSTER
            else [g.name for g in self.catalog]
        )

    def offers(self, *, free: bool, whole_only: bool = False) -> list[tuple[GpuType, int]]:
        if self.mode is PlacementMode.CATALOG:
            return [(gpu, CATALOG_NODE_GPUS) for gpu in self.catalog]
        return [
            (t.gpu, t.most_free_per_node if free else t.most_per_node)
            for t in self.targets
            if (t.most_free_per_node if free else t.most_per_node) > 0
            and not (whole_only and t.kind is TargetKind.MIG)
        ]

    def target(self, name: str) -> GpuTarget | None:
        return next((t for t in self.targets if t.name == name), None)

    def resolve(self, wanted: str) -> GpuType | None:
        """A type by the name the user wrote: a target's name or node label, or a catalog type."""
        key = gpu_name_key(wanted)
        if self.mode is PlacementMode.CLUSTER:
            for t in self.targets:
                if key in (gpu_name_key(t.name), gpu_name_key(t.gpu.product)):
                    return t.gpu
            try:
                known = find_gpu(wanted)
            except SizingError:
                return None
            return next((t.gpu for t in self.targets if t.gpu.name == known.name), None)
        return next((g for g in self.catalog if g.is_named(key)), None)


def resolve_mode(policy: PlacementPolicy, inventory: Inventory | None) -> PlacementMode:
    if policy.mode is not None:
        return policy.mode
    return PlacementMode.CLUSTER if inventory is not None and inventory.has_gpus else PlacementMode.CATALOG


def _field(policy: PlacementPolicy, inventory: Inventory | None, exclude: tuple[str, str] | None) -> _Field:
    mode = resolve_mode(policy, inventory)
    summary = inventory.summary(exclude) if inventory is not None else ""
    if mode is PlacementMode.CLUSTER:
        return _Field(mode, summary, targets=(inventory or Inventory()).targets(exclude))
    allowed = {name.lower() for name in policy.catalog_types}
    catalog = [
        gpu
        for gpu in gpu_catalog().values()
        if not allowed or gpu.name.lower() in allowed or gpu.product.lower() in allowed
    ]
    return _Field(mode, summary, catalog=catalog)


def _pinned(request: PlanRequest, gpu: GpuType, preference: Preference) -> PlanRequest:
    changes: dict[str, Any] = {"gpu": gpu}
    if preference.count is not None:
        changes["gpu_count"] = preference.count
    if preference.max_memory_fraction is not None:
        changes["max_memory_fraction"] = preference.max_memory_fraction
    return replace(request, **changes)


def _gpus(count: int, name: str) -> str:
    return f"{count} x {name}" if count > 1 else name


def _absent(wanted: str, found: _Field) -> str:
    if found.mode is PlacementMode.CLUSTER:
        return f"the cluster has no schedulable node of {wanted} (it has {found.summary})"
    return f"{wanted} is not among the types catalog mode may use ({', '.join(found.names())})"


def _pending_warning(plan_: Plan, target: GpuTarget | None, nodes: int) -> str | None:
    """Said when the GPUs exist but are taken: the pod waits for them."""
    if target is None:
        return None
    per_pod = plan_.tensor_parallel if nodes > 1 else plan_.gpu_count
    if target.nodes_with(per_pod, free=True) >= nodes:
        return None
    unit = ("instance" if target.kind is TargetKind.MIG else "GPU") + ("s" if per_pod > 1 else "")
    return (
        f"no node of {target.name} has {per_pod} free {unit} right now "
        f"({target.units_free} of {target.units} free): the pod stays Pending until they free up"
    )


def _hami_share(request: PlanRequest, sized: Plan, gpu: GpuType, free_mib: int) -> Plan | None:
    """The plan on a HAMi share of `gpu` just large enough for it (None when no node has that much)."""
    physical_mib = gpu.cuda_total_bytes // MIB

    def at(share_mib: int) -> Plan:
        changed = replace(request, gpu=gpu, gpu_count=1, gpu_memory_bytes_override=share_mib * MIB)
        return plan(changed, gpus=[(gpu, 1)])

    lowest = math.ceil((sized.required_bytes_per_gpu + sized.outside_bytes_per_gpu) / MIB / HAMI_STEP_MIB)
    highest = physical_mib // HAMI_STEP_MIB
    if lowest > highest:
        return None
    while lowest < highest:  # the least share (in steps) at which the plan fits
        middle = (lowest + highest) // 2
        if at(middle * HAMI_STEP_MIB).fits:
            highest = middle
        else:
            lowest = middle + 1
    shared = at(lowest * HAMI_STEP_MIB)
    return shared if shared.fits and lowest * HAMI_STEP_MIB <= free_mib else None


def _batch_at_cap(sized: Plan) -> int:
    """Max-length sequences one GPU could hold with the engine at its memory cap (the plan itself sizes
    the fraction to the target, so its own max batch says nothing about room to grow)."""
    per_sequence = sized.kv_cache_bytes_per_gpu / sized.concurrency
    room = (
        sized.memory_fraction_cap * sized.gpu_memory_bytes
        - sized.weights_bytes_per_gpu
        - sized.overhead_bytes_per_gpu
    )
    return max(0, math.floor(room / per_sequence)) if per_sequence > 0 else sized.max_batch


def _finish(
    request: PlanRequest,
    sized: Plan,
    found: _Field,
    policy: PlacementPolicy,
    inventory: Inventory | None,
    *,
    nodes: int = 1,
    chosen: int | None = None,
    skipped: tuple[Skipped, ...] = (),
) -> Placed:
    """A fitting plan's placement: its resource, HAMi share, and the warnings it deserves."""
    target = found.target(sized.gpu_type) if found.mode is PlacementMode.CLUSTER else None
    warnings: list[str] = []
    kind = target.kind if target is not None else TargetKind.GPU
    resource = target.resource if target is not None else GPU_RESOURCE
    hami_mib: int | None = None
    if policy.hami and target is not None and kind is TargetKind.GPU and sized.gpu_count == 1 and nodes == 1:
        shared = _hami_share(request, sized, target.gpu, max(target.hami_free_mib.values(), default=0))
        if shared is not None:
            sized, hami_mib = shared, shared.gpu_memory_bytes // MIB
    if hami_mib is None and (pending := _pending_warning(sized, target, nodes)):
        warnings.append(pending)
    if (most := _batch_at_cap(sized)) < sized.concurrency * (1 + HEADROOM):
        warnings.append(
            f"max batch {most} at the memory cap {sized.memory_fraction_cap:.2f} is within {HEADROOM:.0%} of "
            f"the target concurrency {sized.concurrency}: little room for more or longer requests"
        )
    if found.mode is PlacementMode.CATALOG and inventory is not None:
        present = {t.name for t in inventory.targets()}
        if sized.gpu_type not in present:
            warnings.append(
                f"catalog mode: the cluster has no node of {sized.gpu_type} now; the pod stays Pending "
                "until the autoscaler adds one"
            )
    notes = tuple(t.note for t in found.targets if t.note and t.name == sized.gpu_type)
    return Placed(
        sized,
        Placement(
            mode=found.mode,
            inventory=found.summary,
            resource=resource,
            kind=kind,
            nodes=nodes,
            hami_memory_mib=hami_mib,
            chosen=chosen,
            skipped=skipped,
            warnings=tuple(warnings),
            notes=notes,
        ),
    )


def _refused(sized: Plan, found: _Field, reason: str, skipped: tuple[Skipped, ...] = ()) -> Placed:
    return Placed(sized, Placement(mode=found.mode, inventory=found.summary, skipped=skipped, refusal=reason))


def _multi_node(request: PlanRequest, found: _Field) -> tuple[Plan, int] | None:
    """Tensor parallelism inside a node, pipeline stages across nodes: the cheapest split that fits."""
    best: tuple[float, Plan, int] | None = None
    for gpu, per_node in found.offers(free=False, whole_only=True):
        tensor = max((n for n in TENSOR_PARALLEL_SIZES if n <= per_node), default=0)
        if tensor == 0 or (request.gpu_count is not None and request.gpu_count != tensor):
            continue
        target = found.target(gpu.name)
        nodes = target.nodes_with(tensor, free=False) if target is not None else MAX_PIPELINE_STAGES
        for stages in range(2, min(nodes, MAX_PIPELINE_STAGES, request.model.num_layers) + 1):
            split = replace(request, gpu=gpu, gpu_count=tensor, pipeline_parallel=stages)
            try:
                sized = plan(split, gpus=[(gpu, tensor)])
            except SizingError:
                break  # the heads do not split over this node's GPUs
            if sized.fits:
                cost = gpu.price_per_hour * tensor * stages
                if best is None or cost < best[0]:
                    best = (cost, sized, stages)
                break
    return None if best is None else (best[1], best[2])


def place(
    request: PlanRequest,
    *,
    preferences: Sequence[Preference] = (),
    pinned: Preference | None = None,
    inventory: Inventory | None = None,
    policy: PlacementPolicy = PlacementPolicy(),
    exclude: tuple[str, str] | None = None,
    alternatives: bool = True,
) -> Placed:
    """Plan `request` onto what the mode offers: the first preference that fits and can be placed, the
    pinned type, or the cheapest option (free GPUs first, then ones in use, then several nodes).
    Without `alternatives` the plan lists no field (`plan`'s flag): what the request path needs.

    `exclude` (namespace, name) is the LLMDeployment being planned: GPUs its own pods hold count as free.
    Raises SizingError only for bad input (a type no catalog or node knows)."""
    found = _field(policy, inventory, exclude)
    if preferences:
        return _place_preferences(request, preferences, found, policy, inventory, alternatives)
    if pinned is not None:
        return _place_pinned(request, pinned, found, policy, inventory, alternatives)
    return _place_auto(request, found, policy, inventory, alternatives)


def _unknown_type(wanted: str, found: _Field) -> SizingError:
    try:
        find_gpu(wanted)
    except SizingError as error:
        if found.mode is PlacementMode.CATALOG or not found.targets:
            return error
        return SizingError(
            "gpu",
            f"{wanted!r} is neither a catalog GPU type nor one the cluster has ({', '.join(found.names())})",
        )
    return SizingError("gpu", _absent(wanted, found))


def _place_pinned(
    request: PlanRequest,
    pinned: Preference,
    found: _Field,
    policy: PlacementPolicy,
    inventory: Inventory | None,
    alternatives: bool,
) -> Placed:
    gpu = found.resolve(pinned.type)
    if gpu is None:
        catalog_gpu = _catalog_or_raise(pinned.type, found)
        sized = plan(_pinned(request, catalog_gpu, pinned), gpus=[(catalog_gpu, CATALOG_NODE_GPUS)])
        return _refused(sized, found, _absent(catalog_gpu.name, found))
    per_node = next((limit for g, limit in found.offers(free=False) if g.name == gpu.name), CATALOG_NODE_GPUS)
    wanted = _pinned(request, gpu, pinned)
    if wanted.gpu_count is not None and wanted.gpu_count > max(per_node, 1):
        sized = plan(wanted, gpus=[(gpu, wanted.gpu_count)])
        return _refused(
            sized, found, f"{wanted.gpu_count} x {gpu.name} do not fit one node: the largest has {per_node}"
        )
    # The whole field is offered, so the refusal can suggest the other types the mode allows.
    sized = plan(wanted, gpus=found.offers(free=False), alternatives=alternatives)
    if sized.fits:
        return _finish(request, sized, found, policy, inventory)
    split = _multi_node(
        replace(wanted, gpu_count=None) if pinned.count is None else wanted,
        _only(found, gpu.name),
    )
    if split is not None:
        return _finish(request, split[0], found, policy, inventory, nodes=split[1])
    return Placed(sized, Placement(mode=found.mode, inventory=found.summary))


def _only(found: _Field, name: str) -> _Field:
    return replace(
        found,
        targets=[t for t in found.targets if t.name == name],
        catalog=[g for g in found.catalog if g.name == name],
    )


def _catalog_or_raise(wanted: str, found: _Field) -> GpuType:
    try:
        return find_gpu(wanted)
    except SizingError:
        raise _unknown_type(wanted, found) from None


def _place_auto(
    request: PlanRequest,
    found: _Field,
    policy: PlacementPolicy,
    inventory: Inventory | None,
    alternatives: bool,
) -> Placed:
    if found.mode is PlacementMode.CLUSTER and not found.targets:
        return _refused(
            plan(request), found, "the cluster has no schedulable GPU node (placement mode cluster)"
        )
    attempts = (
        [found.offers(free=True), found.offers(free=False)]
        if found.mode is PlacementMode.CLUSTER
        else [found.offers(free=False)]
    )
    sized: Plan | None = None
    for offers in attempts:
        if not offers:
            continue
        try:
            sized = plan(request, gpus=offers, alternatives=alternatives)
        except SizingError as error:
            if error.field != "gpu-count":
                raise
            continue
        if sized.fits:
            return _finish(request, sized, found, policy, inventory)
    split = _multi_node(request, found)
    if split is not None:
        return _finish(request, split[0], found, policy, inventory, nodes=split[1])
    if sized is None:  # no type offers the pinned count on one node
        sized = plan(request)
        most = max((limit for _, limit in found.offers(free=False)), default=0)
        return _refused(
            sized,
            found,
            f"no node holds {request.gpu_count} GPUs (the largest has {most}); cluster has {found.summary}",
        )
    return Placed(sized, Placement(mode=found.mode, inventory=found.summary))


def _place_preferences(
    request: PlanRequest,
    preferences: Sequence[Preference],
    found: _Field,
    policy: PlacementPolicy,
    inventory: Inventory | None,
    alternatives: bool,
) -> Placed:
    skipped: list[Skipped] = []
    first: Plan | None = None
    for index, preference in enumerate(preferences):
        gpu = found.resolve(preference.type)
        if gpu is None:
            catalog_gpu = _catalog_or_raise(preference.type, found)
            skipped.append(Skipped(index, catalog_gpu.name, _absent(catalog_gpu.name, found)))
            continue
        limit = next((n for g, n in found.offers(free=False) if g.name == gpu.name), CATALOG_NODE_GPUS)
        wanted = _pinned(request, gpu, preference)
        if wanted.gpu_count is not None and wanted.gpu_count > limit:
            skipped.append(
                Skipped(
                    index,
                    gpu.name,
                    f"{wanted.gpu_count} x {gpu.name} do not fit one node (the largest has {limit})",
                )
            )
            continue
        try:
            sized = plan(wanted, gpus=[(gpu, max(limit, 1))], alternatives=alternatives)
        except SizingError as error:
            skipped.append(Skipped(index, gpu.name, error.message))
            continue
        first = first or sized
        if not sized.fits:
            skipped.append(Skipped(index, gpu.name, f"does not fit: {sized.reasons[0]}"))
            continue
        placed = _finish(request, sized, found, policy, inventory, chosen=index, skipped=tuple(skipped))
        pending = (
            found.mode is PlacementMode.CLUSTER
            and placed.placement.hami_memory_mib is None
            and (_pending_warning(sized, found.target(gpu.name), 1) is not None)
        )
        if pending:
            target = found.target(gpu.name)
            assert target is not None
            skipped.append(
                Skipped(
                    index,
                    gpu.name,
                    f"fits {_gpus(sized.gpu_count, gpu.name)}, but no node has {sized.gpu_count} free "
                    f"({target.units_free} of {target.units} free)",
                )
            )
            continue
        return placed
    reasons = "; ".join(f"[{s.index}] {s.type}: {s.reason}" for s in skipped)
    sized = first if first is not None else plan(request)
    return _refused(sized, found, f"no preference can be placed: {reasons}", tuple(skipped))


def placement_holds(
    inventory: Inventory, gpu_type: str, per_pod: int, nodes: int, exclude: tuple[str, str] | None
) -> tuple[bool, str]:
    """Whether the cluster still offers a placement made earlier: `nodes` nodes of `gpu_type` with
    `per_pod` units free each (counting what the resource's own pods hold). The reason says why not."""
    target = next((t for t in inventory.targets(exclude) if t.name == gpu_type), None)
    if target is None:
        return False, f"the cluster has no schedulable node of {gpu_type} now (it has {inventory.summary()})"
    if target.nodes_with(per_pod, free=True) < nodes:
        return False, (
            f"{nodes} node{'s' if nodes > 1 else ''} with {per_pod} free {gpu_type} needed; "
            f"{target.nodes_with(per_pod, free=True)} now ({target.units_free} of {target.units} free)"
        )
    return True, f"{target.describe()} holds it"
