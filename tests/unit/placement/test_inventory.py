"""The inventory read from real GPU Feature Discovery label sets and from bound pods."""

from __future__ import annotations

from typing import Any

import pytest

from support.nodes import gpu_node, gpu_pod, mig_nodes
from vramgate.placement import GPU_RESOURCE, Inventory, TargetKind
from vramgate.placement.inventory import parse_pod
from vramgate.sizing.units import GIB, MIB


def test_mig_none_node_is_a_whole_a100_even_without_the_nvidia_prefix() -> None:
    inventory = Inventory.from_objects([mig_nodes()[0]])
    [target] = inventory.targets()
    assert (target.name, target.kind, target.resource) == ("A100-40GB", TargetKind.GPU, GPU_RESOURCE)
    assert target.gpu.product == "A100-SXM4-40GB"  # the node's own label: the selector must match it
    assert target.catalogued and target.capacity == {"a100-mig-none": 1}


def test_mig_single_strategy_offers_seven_1g_5gb_instances_through_nvidia_com_gpu() -> None:
    [target] = Inventory.from_objects([mig_nodes()[1]]).targets()
    assert target.kind is TargetKind.MIG and target.resource == GPU_RESOURCE
    assert target.gpu.product == "A100-SXM4-40GB-MIG-1g.5gb"
    assert target.gpu.memory_mib == 4864  # 4.75 GiB from the MIG table, the same as GFD's label
    assert target.capacity == {"a100-mig-single": 7} and target.most_per_node == 1
    assert target.gpu.sm_count == 14  # GFD's nvidia.com/gpu.multiprocessors, not the A100's 108


def test_mig_mixed_strategy_offers_one_target_per_profile_resource() -> None:
    targets = {t.name: t for t in Inventory.from_objects([mig_nodes()[2]]).targets()}
    assert set(targets) == {"A100-40GB-MIG-1g.5gb", "A100-40GB-MIG-2g.10gb", "A100-40GB-MIG-3g.20gb"}
    three = targets["A100-40GB-MIG-3g.20gb"]
    assert three.resource == "nvidia.com/mig-3g.20gb" and three.gpu.product == "A100-SXM4-40GB"
    # The guide's labels call it 3g.21gb; the table still sizes the resource (19.62 GiB).
    assert three.gpu.memory_mib == round(19.62 * GIB / MIB)
    assert "nvidia.com/gpu" not in {t.resource for t in targets.values()}  # no whole GPU is advertised
    assert targets["A100-40GB-MIG-2g.10gb"].gpu.sm_count == 28  # nvidia.com/mig-2g.10gb.multiprocessors
    # No label for the 3g.20gb resource (the guide writes 3g.21gb): the whole A100's 108 bound it.
    assert three.gpu.sm_count == 108


def test_free_gpus_are_allocatable_minus_bound_unfinished_pods() -> None:
    nodes = [gpu_node("a10g-0", "NVIDIA-A10G", 23028, 4), gpu_node("a10g-1", "NVIDIA-A10G", 23028, 4)]
    pods = [
        gpu_pod("a10g-0", 3),
        gpu_pod("a10g-0", 1, phase="Succeeded"),  # finished: holds nothing
        gpu_pod(None, 4),  # not bound yet: holds nothing
        gpu_pod("a10g-1", 2, owner="chat"),
    ]
    inventory = Inventory.from_objects(nodes, pods)
    [target] = inventory.targets()
    assert target.free == {"a10g-0": 1, "a10g-1": 2}
    assert target.most_free_per_node == 2 and target.units_free == 3
    # Re-planning "chat" counts what its own pods hold as free.
    [own] = inventory.targets(exclude=("team", "chat"))
    assert own.free == {"a10g-0": 1, "a10g-1": 4}
    assert inventory.summary() == "2 nodes of A10G (3 of 8 GPUs free)"


def test_unknown_product_is_sized_from_its_memory_label_and_says_so() -> None:
    [target] = Inventory.from_objects([gpu_node("x", "NVIDIA-RTX-A5000", 24564, 2)]).targets()
    assert not target.catalogued and target.name == "NVIDIA-RTX-A5000"
    assert target.gpu.memory_mib == 24564
    assert "not in the catalog: sized from its nvidia.com/gpu.memory label (24564 MiB)" in target.note


@pytest.mark.parametrize(
    ("labels", "allocatable"),
    [
        ({"nvidia.com/gpu.memory": "-1"}, {}),
        ({"nvidia.com/gpu.memory": "1"}, {}),  # priced at 0 per hour
        ({"nvidia.com/gpu.compute.major": "x", "nvidia.com/gpu.compute.minor": "y"}, {}),
        ({"nvidia.com/mig-foo.memory": "5000"}, {"nvidia.com/mig-foo": "1"}),
        ({"nvidia.com/mig-0g.5gb.memory": "5000"}, {"nvidia.com/mig-0g.5gb": "1"}),
        ({"nvidia.com/mig-1g.5gb.memory": "5000", "nvidia.com/mig-1g.5gb.multiprocessors": "-1"},
         {"nvidia.com/mig-1g.5gb": "1"}),
    ],
)  # fmt: skip
def test_a_node_with_labels_no_gpu_has_is_left_out_and_the_others_still_place(
    labels: dict[str, str], allocatable: dict[str, str]
) -> None:
    """One node's odd labels once made every placement fail (a GpuType out of bounds, or int('foo'))."""
    odd = gpu_node("odd", "NVIDIA-RTX-A5000", 24564, 1, **allocatable)
    odd["metadata"]["labels"].update(labels)
    targets = Inventory.from_objects([gpu_node("good", "NVIDIA-L4", 23034, 1), odd]).targets()
    assert "L4" in [target.name for target in targets]
    assert all(target.gpu.memory_mib > 1 and target.gpu.price_per_hour > 0 for target in targets)


@pytest.mark.parametrize(
    "odd",
    [
        {"metadata": [1]},
        {"metadata": {"labels": ["nvidia.com/gpu.product"]}},
        {"status": {"allocatable": ["nvidia.com/gpu"]}},
        {"status": {"conditions": 5}},
        {"status": [1], "spec": [1]},
    ],
)
def test_objects_of_the_wrong_shape_in_a_dump_are_left_out(odd: dict[str, Any]) -> None:
    """`vramgate plan --nodes` reads a file anyone may have edited; each of these once raised."""
    pod = gpu_pod("good", 1) | {"spec": {"nodeName": "good", "containers": 5, "initContainers": [7]}}
    inventory = Inventory.from_objects([odd, gpu_node("good", "NVIDIA-L4", 23034, 2)], [pod, odd])
    assert [target.name for target in inventory.targets()] == ["L4"]


def test_unready_cordoned_and_gpu_less_nodes_are_left_out() -> None:
    cordoned = gpu_node("a", "NVIDIA-L4", 23034, 1) | {"spec": {"unschedulable": True}}
    unready = gpu_node("b", "NVIDIA-L4", 23034, 1)
    unready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    cpu_only = {"metadata": {"name": "c", "labels": {}}, "status": {"allocatable": {"cpu": "8"}}}
    inventory = Inventory.from_objects([cordoned, unready, cpu_only])
    assert inventory.has_gpus and inventory.targets() == []
    assert inventory.summary() == "no schedulable GPU nodes"


@pytest.mark.parametrize(
    ("containers", "init", "expected"),
    [
        (
            [
                {"limits": {GPU_RESOURCE: "2"}},
                {"requests": {GPU_RESOURCE: "1"}, "limits": {GPU_RESOURCE: "1"}},
            ],
            [],
            3,
        ),
        ([{"limits": {GPU_RESOURCE: "1"}}], [{"limits": {GPU_RESOURCE: "4"}}], 4),
    ],
)
def test_pod_requests_sum_containers_and_take_the_largest_init_container(
    containers: list[dict[str, Any]], init: list[dict[str, Any]], expected: int
) -> None:
    pod = {
        "metadata": {"namespace": "n"},
        "spec": {
            "nodeName": "x",
            "containers": [{"resources": r} for r in containers],
            "initContainers": [{"resources": r} for r in init],
        },
        "status": {"phase": "Pending"},
    }
    parsed = parse_pod(pod)
    assert parsed is not None and parsed.requests[GPU_RESOURCE] == expected
