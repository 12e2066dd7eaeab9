"""What GPUs a cluster has, read from plain Node and Pod objects (dicts, as the API server returns them).

GPU Feature Discovery labels each node with its product, memory and count, and the device plugin
advertises `nvidia.com/gpu` (or, under MIG's mixed strategy, one `nvidia.com/mig-<profile>` resource per
profile). A GPU is free when the node's allocatable count exceeds what bound, unfinished pods request.
Nothing here talks to Kubernetes: the operator and `vramgate plan --nodes` feed the same objects in.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache, cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vramgate.sizing import GpuType, gpu_catalog
from vramgate.sizing.catalog import catalog_entries, gpu_name_key
from vramgate.sizing.errors import OutOfBoundsError
from vramgate.sizing.units import GIB, MIB

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
HAMI_MEMORY_RESOURCE = "nvidia.com/gpumem"  # HAMi: MiB of one GPU's memory granted to a container
HAMI_NODE_ANNOTATION = "hami.io/node-nvidia-register"  # HAMi's device plugin registers a node's GPUs here
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
COMPUTE_MAJOR_LABEL = "nvidia.com/gpu.compute.major"
COMPUTE_MINOR_LABEL = "nvidia.com/gpu.compute.minor"
MULTIPROCESSORS_LABEL = "nvidia.com/gpu.multiprocessors"  # GFD sets it on MIG instances
OWNER_LABEL = "vramgate.dev/llmdeployment"  # on the pods vramgate generates: their GPUs are the owner's own
_MIG_SINGLE_MARKER = "-MIG-"  # single strategy: the product label becomes "<GPU>-MIG-<profile>"
_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
# A product the catalog lacks and GFD reports no compute capability for is taken as Ampere (8.0).
_ASSUMED_COMPUTE_CAPABILITY = "8.0"


class TargetKind(StrEnum):
    GPU = "gpu"  # whole GPUs: nvidia.com/gpu
    MIG = "mig"  # one MIG instance: nvidia.com/mig-<profile> (mixed) or nvidia.com/gpu (single)


class MigProfile(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    name: str
    slices: int = Field(ge=1, le=7)
    memory_gib: float = Field(alias="memoryGiB", gt=0)

    @property
    def memory_mib(self) -> int:
        return round(self.memory_gib * GIB / MIB)


class MigTable(BaseModel):
    model_config = ConfigDict(frozen=True)

    gpu: str
    source: str
    profiles: list[MigProfile]


@cache
def mig_profiles() -> dict[str, dict[str, MigProfile]]:
    """MIG profiles by parent GPU type name (lower case), then profile name."""
    tables = (MigTable.model_validate(entry) for entry in catalog_entries("mig"))
    return {table.gpu.lower(): {p.name: p for p in table.profiles} for table in tables}


def _quantity(value: object) -> int:
    """A count-like resource quantity ("8", "4864", 2); anything else (cpu "500m") is 0."""
    try:
        return int(str(value))
    except ValueError:
        return 0


def catalog_type_for(product: str) -> GpuType | None:
    """The catalog GPU type a `nvidia.com/gpu.product` label names, if any."""
    wanted = gpu_name_key(product)
    for gpu in gpu_catalog().values():
        if gpu_name_key(gpu.product) == wanted:
            return gpu
    return None


@cache
def _price_per_mib() -> float:
    """Median catalog price per MiB: how an unknown product or a MIG slice is ranked against the rest."""
    return statistics.median(gpu.price_per_hour / gpu.memory_mib for gpu in gpu_catalog().values())


@dataclass(frozen=True)
class NodeGpus:
    """One GPU node as GFD and the device plugin describe it."""

    name: str
    labels: Mapping[str, str]
    allocatable: Mapping[str, int]  # nvidia.com/* resources only
    schedulable: bool
    hami: bool = False  # HAMi shares this node's GPUs (its registration annotation, or gpumem advertised)

    @property
    def product(self) -> str:
        return self.labels.get(PRODUCT_LABEL, "")

    @property
    def memory_mib(self) -> int | None:
        value = _quantity(self.labels.get(MEMORY_LABEL, ""))
        return value or None

    @property
    def gpu_count(self) -> int:
        return _quantity(self.labels.get(COUNT_LABEL, "")) or self.allocatable.get(GPU_RESOURCE, 0)

    @property
    def mig_strategy(self) -> str | None:
        return self.labels.get(MIG_STRATEGY_LABEL)


@dataclass(frozen=True)
class PodGpus:
    """What one bound, unfinished pod takes from its node."""

    node: str
    namespace: str
    owner: str | None  # the LLMDeployment that generated it, if vramgate did
    requests: Mapping[str, int]


def _field(parent: object, key: str) -> Mapping[str, Any]:
    """An object field of a node or pod; empty when absent or of another shape (a hand-edited dump
    given to the CLI can hold anything; the API server's objects always have the right one)."""
    value = parent.get(key) if isinstance(parent, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _items(parent: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The objects of a list field (conditions, containers); empty when it is not a list."""
    value = parent.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def parse_node(node: Mapping[str, Any]) -> NodeGpus | None:
    """A node's GPUs, or None for a node without a GPU product label or GPU resources."""
    metadata, status = _field(node, "metadata"), _field(node, "status")
    labels = {str(k): str(v) for k, v in _field(metadata, "labels").items()}
    allocatable = {
        str(name): _quantity(value)
        for name, value in _field(status, "allocatable").items()
        if str(name).startswith("nvidia.com/")
    }
    if PRODUCT_LABEL not in labels or not any(allocatable.values()):
        return None
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in _items(status, "conditions"))
    unschedulable = bool(_field(node, "spec").get("unschedulable"))
    hami = HAMI_NODE_ANNOTATION in _field(metadata, "annotations") or HAMI_MEMORY_RESOURCE in allocatable
    return NodeGpus(str(metadata.get("name", "")), labels, allocatable, ready and not unschedulable, hami)


def _container_requests(container: Mapping[str, Any]) -> dict[str, int]:
    resources_ = _field(container, "resources")
    # Extended resources cannot be overcommitted: a limit alone is also the request.
    merged = {**_field(resources_, "limits"), **_field(resources_, "requests")}
    return {str(k): _quantity(v) for k, v in merged.items() if str(k).startswith("nvidia.com/")}


def parse_pod(pod: Mapping[str, Any]) -> PodGpus | None:
    """The GPU resources a pod holds on its node, or None when it holds none (unbound, finished)."""
    spec, status = _field(pod, "spec"), _field(pod, "status")
    node = spec.get("nodeName")
    if not node or status.get("phase") in _FINISHED_PHASES:
        return None
    total: dict[str, int] = {}
    for container in _items(spec, "containers"):
        for name, amount in _container_requests(container).items():
            total[name] = total.get(name, 0) + amount
    for container in _items(spec, "initContainers"):  # init containers run one at a time, first
        for name, amount in _container_requests(container).items():
            total[name] = max(total.get(name, 0), amount)
    if not any(total.values()):
        return None
    metadata = _field(pod, "metadata")
    owner = _field(metadata, "labels").get(OWNER_LABEL)
    return PodGpus(str(node), str(metadata.get("namespace", "")), owner, total)


@dataclass(frozen=True)
class GpuTarget:
    """A kind of GPU placement the cluster offers: whole GPUs of a type, or one MIG profile of a type.

    `gpu` is what the planner sizes against (a MIG instance's memory for a MIG profile), its `product`
    the node selector value. Counts are per node: capacity from allocatable, free after bound pods."""

    gpu: GpuType
    kind: TargetKind
    resource: str
    catalogued: bool
    note: str = ""
    capacity: dict[str, int] = field(default_factory=dict)  # node -> allocatable units
    free: dict[str, int] = field(default_factory=dict)  # node -> units no bound pod requests
    hami_free_mib: dict[str, int] = field(default_factory=dict)  # HAMi node -> GPU memory not granted

    @property
    def name(self) -> str:
        return self.gpu.name

    @property
    def units(self) -> int:
        return sum(self.capacity.values())

    @property
    def units_free(self) -> int:
        return sum(self.free.values())

    @property
    def most_per_node(self) -> int:
        """GPUs one replica can use on one node (a MIG instance cannot join tensor parallelism)."""
        return 1 if self.kind is TargetKind.MIG else max(self.capacity.values(), default=0)

    @property
    def most_free_per_node(self) -> int:
        return (
            min(1, max(self.free.values(), default=0))
            if self.kind is TargetKind.MIG
            else max(self.free.values(), default=0)
        )

    def nodes_with(self, count: int, *, free: bool) -> int:
        """Nodes that hold `count` units (free ones, or at all)."""
        per_node = self.free if free else self.capacity
        return sum(1 for units in per_node.values() if units >= count)

    def describe(self) -> str:
        """`3 x A10G (5 GPUs free)` as the cluster's summary says it."""
        unit = "instances" if self.kind is TargetKind.MIG else "GPUs"
        nodes = len(self.capacity)
        plural = "s" if nodes != 1 else ""
        return f"{nodes} node{plural} of {self.name} ({self.units_free} of {self.units} {unit} free)"


def _whole_gpu_type(node: NodeGpus) -> tuple[GpuType, bool, str] | None:
    """The GpuType behind a node's product label: the catalog's, or one made from its memory label."""
    known = catalog_type_for(node.product)
    if known is not None:
        return replace(known, product=node.product), True, ""
    if node.memory_mib is None:
        return None
    major, minor = node.labels.get(COMPUTE_MAJOR_LABEL), node.labels.get(COMPUTE_MINOR_LABEL)
    capability = f"{major}.{minor}" if major and minor else _ASSUMED_COMPUTE_CAPABILITY
    note = (
        f"{node.product} is not in the catalog: sized from its {MEMORY_LABEL} label ({node.memory_mib} MiB)"
        + ("" if major and minor else f", compute capability taken as {capability}")
    )
    try:
        gpu = GpuType(
            name=node.product,
            product=node.product,
            compute_capability=capability,
            memory_mib=node.memory_mib,
            price_per_hour=round(node.memory_mib * _price_per_mib(), 4),
            note=note,
        )
    except OutOfBoundsError:  # labels no GPU has (-1 MiB, capability x.y): the node is left out
        return None
    return gpu, False, note


def _mig_type(
    parent: GpuType,
    parent_known: bool,
    profile: str,
    label_mib: int | None,
    product: str,
    name: str,
    label_sms: int | None,
) -> tuple[GpuType, str] | None:
    """One MIG instance of `parent` as a GpuType: memory from the table, else from GFD's label; its
    streaming multiprocessors from GFD's label, else the whole GPU's (an instance has fewer, so buffers
    sized per SM are bounded from above)."""
    entry = mig_profiles().get(parent.name.lower(), {}).get(profile) if parent_known else None
    if entry is not None:
        memory_mib, note = entry.memory_mib, ""
    elif label_mib:
        memory_mib = label_mib
        note = (
            f"MIG {profile} of {parent.name} is not in the MIG table: sized from its label ({label_mib} MiB)"
        )
    else:
        return None
    if entry is not None:
        slices = entry.slices
    elif (compute_slices := re.match(r"(\d+)g\.", profile)) is not None:
        slices = int(compute_slices[1])
    else:  # not a MIG profile name (<slices>g.<memory>gb): nothing to size it by
        return None
    try:
        gpu = GpuType(
            name=name,
            product=product,
            compute_capability=parent.compute_capability,
            sm_count=label_sms or parent.sm_count,
            memory_mib=memory_mib,
            cuda_total_mib=memory_mib,
            price_per_hour=round(parent.price_per_hour * slices / 7, 4),
            note=note or f"MIG instance {profile} of {parent.name}",
        )
    except OutOfBoundsError:  # labels no MIG instance has (0 slices, -1 multiprocessors): left out
        return None
    return gpu, note


@dataclass(frozen=True)
class Inventory:
    """The GPU nodes and the GPU-holding pods of a cluster at one moment."""

    nodes: tuple[NodeGpus, ...] = ()
    pods: tuple[PodGpus, ...] = ()

    @classmethod
    def from_objects(
        cls, nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]] = ()
    ) -> Inventory:
        parsed_nodes = tuple(n for n in (parse_node(node) for node in nodes) if n is not None)
        parsed_pods = tuple(p for p in (parse_pod(pod) for pod in pods) if p is not None)
        return cls(parsed_nodes, parsed_pods)

    @property
    def has_gpus(self) -> bool:
        return bool(self.nodes)

    @cached_property
    def _held(self) -> dict[str, dict[str, int]]:
        """Units each node's bound pods hold, by resource (summed once: decisions read it many times)."""
        held: dict[str, dict[str, int]] = {}
        for pod in self.pods:
            on_node = held.setdefault(pod.node, {})
            for resource, units in pod.requests.items():
                on_node[resource] = on_node.get(resource, 0) + units
        return held

    @cached_property
    def _held_by_owner(self) -> dict[tuple[str, str], dict[str, dict[str, int]]]:
        held: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
        for pod in self.pods:
            if pod.owner is not None:
                on_node = held.setdefault((pod.namespace, pod.owner), {}).setdefault(pod.node, {})
                for resource, units in pod.requests.items():
                    on_node[resource] = on_node.get(resource, 0) + units
        return held

    @cached_property
    def _targets(self) -> dict[tuple[str, str] | None, list[GpuTarget]]:
        return {}

    def requested(self, node: str, resource: str, exclude: tuple[str, str] | None = None) -> int:
        """Units of `resource` bound pods hold on `node`, less those of the LLMDeployment `exclude`
        (namespace, name): a resource being re-planned may reuse what its own pods hold."""
        total = self._held.get(node, {}).get(resource, 0)
        if exclude is not None:
            total -= self._held_by_owner.get(exclude, {}).get(node, {}).get(resource, 0)
        return total

    def targets(self, exclude: tuple[str, str] | None = None) -> list[GpuTarget]:
        """Every placement target on schedulable nodes, with capacity and free units per node (computed
        once per inventory and exclusion; callers only read them)."""
        if exclude not in self._targets:
            self._targets[exclude] = self._compute_targets(exclude)
        return self._targets[exclude]

    def _compute_targets(self, exclude: tuple[str, str] | None) -> list[GpuTarget]:
        found: dict[str, GpuTarget] = {}

        def add(
            gpu: GpuType, kind: TargetKind, resource: str, known: bool, note: str, node: NodeGpus
        ) -> None:
            target = found.setdefault(gpu.name, GpuTarget(gpu, kind, resource, known, note))
            capacity = node.allocatable.get(resource, 0)
            if node.hami and kind is TargetKind.GPU:  # HAMi advertises virtual GPUs; tensor parallelism
                capacity = min(capacity, node.gpu_count)  # needs physical ones (GFD's count)
            target.capacity[node.name] = capacity
            target.free[node.name] = max(0, capacity - self.requested(node.name, resource, exclude))
            if kind is TargetKind.GPU and node.hami:
                hami_total = node.allocatable.get(HAMI_MEMORY_RESOURCE) or (
                    (node.memory_mib or 0) * max(node.gpu_count, 1)
                )
                granted = self.requested(node.name, HAMI_MEMORY_RESOURCE, exclude)
                target.hami_free_mib[node.name] = max(0, hami_total - granted)

        for node in self.nodes:
            if not node.schedulable:
                continue
            if _MIG_SINGLE_MARKER in node.product:  # single strategy: every GPU is cut the same way
                parent_product, profile = node.product.split(_MIG_SINGLE_MARKER, 1)
                parent = catalog_type_for(parent_product)
                if parent is not None:
                    # Named by its product label: it differs from a mixed-strategy target's selector.
                    sms = _quantity(node.labels.get(MULTIPROCESSORS_LABEL, "")) or None
                    made = _mig_type(parent, True, profile, node.memory_mib, node.product, node.product, sms)
                    if made is not None:
                        add(made[0], TargetKind.MIG, GPU_RESOURCE, True, made[1], node)
                continue
            whole = _whole_gpu_type(node)
            if whole is None:
                continue
            gpu, known, note = whole
            if node.allocatable.get(GPU_RESOURCE, 0) > 0:
                add(gpu, TargetKind.GPU, GPU_RESOURCE, known, note, node)
            for resource in node.allocatable:
                if resource.startswith(MIG_RESOURCE_PREFIX):  # mixed strategy: one resource per profile
                    profile = resource.removeprefix(MIG_RESOURCE_PREFIX)
                    label = _quantity(node.labels.get(f"{MIG_RESOURCE_PREFIX}{profile}.memory", ""))
                    sms = _quantity(node.labels.get(f"{MIG_RESOURCE_PREFIX}{profile}.multiprocessors", ""))
                    name = f"{gpu.name}-MIG-{profile}"
                    made = _mig_type(gpu, known, profile, label or None, node.product, name, sms or None)
                    if made is not None:
                        add(made[0], TargetKind.MIG, resource, known, made[1], node)
        return sorted(found.values(), key=lambda t: (t.kind.value, t.gpu.price_per_hour, t.name))

    def summary(self, exclude: tuple[str, str] | None = None) -> str:
        """One line naming what the cluster has, for messages and the operator's log."""
        targets = self.targets(exclude)
        if not targets:
            return "no schedulable GPU nodes"
        return ", ".join(target.describe() for target in targets)
