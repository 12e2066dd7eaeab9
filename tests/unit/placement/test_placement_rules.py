"""Placement rules: present types only, free GPUs first, preferences in order, MIG, HAMi, several nodes."""

from __future__ import annotations

from typing import Any

import pytest

from support.nodes import gpu_node, gpu_pod, mig_nodes
from vramgate.placement import (
    Inventory,
    PlacementMode,
    PlacementPolicy,
    Preference,
    TargetKind,
    place,
)
from vramgate.sizing import PlanRequest, Precision, SizingError, load_model
from vramgate.sizing.units import MIB


def request(model: str = "meta-llama/Llama-3.1-8B-Instruct", **changes: Any) -> PlanRequest:
    fields: dict[str, Any] = {
        "model": load_model(model),
        "model_source": model,
        "max_seq_len": 4096,
        "concurrency": 8,
    }
    return PlanRequest(**fields | changes)


def cluster(*pods: dict[str, Any]) -> Inventory:
    """Two A10G nodes (4 GPUs each, one of them full), one L4 node with 1 GPU."""
    nodes = [
        gpu_node("a10g-0", "NVIDIA-A10G", 23028, 4),
        gpu_node("a10g-1", "NVIDIA-A10G", 23028, 4),
        gpu_node("l4-0", "NVIDIA-L4", 23034, 1),
    ]
    return Inventory.from_objects(nodes, [gpu_pod("a10g-0", 4), *pods])


def test_auto_pick_chooses_only_among_present_types() -> None:
    placed = place(request(), inventory=cluster())
    assert placed.plan.fits and placed.plan.gpu_type in ("A10G", "L4")
    assert placed.placement.mode is PlacementMode.CLUSTER
    assert {c.gpu_type for c in placed.plan.alternatives} == {"A10G", "L4"}
    assert placed.placement.warnings == () or "headroom" in placed.placement.warnings[0]


def test_catalog_mode_is_todays_behaviour_with_an_optional_allow_list() -> None:
    anywhere = place(request(), inventory=None)
    assert anywhere.placement.mode is PlacementMode.CATALOG
    assert len({c.gpu_type for c in anywhere.plan.alternatives}) > 10
    allowed = place(
        request(), policy=PlacementPolicy(mode=PlacementMode.CATALOG, catalog_types=("H100-80GB",))
    )
    assert allowed.plan.gpu_type == "H100-80GB"


def test_catalog_mode_warns_when_the_cluster_has_no_node_of_the_type() -> None:
    placed = place(
        request(),
        inventory=cluster(),
        policy=PlacementPolicy(mode=PlacementMode.CATALOG, catalog_types=("H100-80GB",)),
    )
    assert any("no node of H100-80GB" in w for w in placed.placement.warnings)


def test_tensor_parallelism_stays_inside_one_node() -> None:
    placed = place(request("meta-llama/Llama-3.1-70B-Instruct", concurrency=2), inventory=cluster())
    # 70B bf16 needs ~8 x 24 GB; no node holds more than 4 A10G: two pipeline stages of 4 each.
    assert placed.plan.fits and placed.plan.tensor_parallel == 4
    assert placed.placement.nodes == placed.plan.pipeline_parallel == 2


@pytest.mark.parametrize("written", ["L4", "NVIDIA-L4", "NVIDIA L4", "nvidia l4"])
def test_a_preference_names_a_present_type_by_catalog_label_or_nvidia_smi_name(written: str) -> None:
    placed = place(request(), inventory=cluster(), preferences=[Preference(written)])
    assert placed.plan.fits and placed.plan.gpu_type == "L4"
    assert placed.plan.gpu_product == "NVIDIA-L4"  # the node selector is the label, whatever was written


def test_a_full_type_is_skipped_by_a_preference_list_with_the_reason_in_numbers() -> None:
    inventory = cluster(gpu_pod("a10g-1", 4))  # both A10G nodes full now
    placed = place(
        request(),
        preferences=[Preference("A10G"), Preference("L4")],
        inventory=inventory,
    )
    assert placed.placement.refusal is None
    assert placed.plan.gpu_type == "L4" and placed.placement.chosen == 1
    [skipped] = placed.placement.skipped
    assert (skipped.index, skipped.type) == (0, "A10G")
    assert "no node has 1 free (0 of 8 free)" in skipped.reason


def test_a_preference_for_an_absent_type_is_skipped_naming_the_cluster() -> None:
    placed = place(request(), preferences=[Preference("H100-80GB"), Preference("L4")], inventory=cluster())
    assert placed.placement.chosen == 1
    assert "the cluster has no schedulable node of H100-80GB" in placed.placement.skipped[0].reason


def test_no_preference_placeable_is_a_refusal_listing_each() -> None:
    placed = place(request(), preferences=[Preference("H100-80GB")], inventory=cluster())
    assert placed.placement.refusal is not None
    assert placed.placement.refusal.startswith("no preference can be placed: [0] H100-80GB")


def test_unknown_type_is_bad_input() -> None:
    with pytest.raises(SizingError, match="'Voodoo-5' is neither a catalog GPU type nor one the cluster has"):
        place(request(), preferences=[Preference("Voodoo-5")], inventory=cluster())


def test_pinned_type_with_no_free_gpu_is_allowed_with_a_pending_warning() -> None:
    inventory = cluster(gpu_pod("l4-0", 1))
    placed = place(request(), pinned=Preference("L4"), inventory=inventory)
    assert placed.plan.fits and placed.placement.refusal is None
    assert any("Pending" in w and "L4" in w for w in placed.placement.warnings)


def test_pinned_type_absent_from_the_cluster_is_refused_with_the_inventory() -> None:
    placed = place(request(), pinned=Preference("H100-80GB"), inventory=cluster())
    assert placed.placement.refusal is not None
    assert (
        "no schedulable node of H100-80GB (it has 1 node of L4 (1 of 1 GPUs free), 2 nodes of A10G (4 of 8"
        in placed.placement.refusal
    )


def test_a_small_model_lands_on_a_mig_instance() -> None:
    small = request("Qwen/Qwen3-0.6B", max_seq_len=2048, concurrency=4)
    placed = place(small, inventory=Inventory.from_objects([mig_nodes()[2]]))
    assert placed.plan.fits
    assert placed.placement.kind is TargetKind.MIG
    assert placed.placement.resource.startswith("nvidia.com/mig-")
    assert placed.plan.gpu_product == "A100-SXM4-40GB"


def test_hami_shares_a_gpu_sized_to_the_plan() -> None:
    small = request("Qwen/Qwen3-0.6B", max_seq_len=2048, concurrency=4)
    nodes = [gpu_node("l4-0", "NVIDIA-L4", 23034, 10, **{"nvidia.com/gpumem": "23034"})]
    placed = place(small, inventory=Inventory.from_objects(nodes), policy=PlacementPolicy(hami=True))
    share = placed.placement.hami_memory_mib
    assert share is not None and share < 23034 / 2
    assert placed.plan.fits and placed.plan.gpu_memory_bytes == share * MIB
    # The fraction is against the share, so the engine asks for what the plan needs of it.
    assert placed.plan.required_bytes_per_gpu <= placed.plan.memory_fraction * share * MIB


def test_deepseek_v3_fp8_is_split_over_two_8_gpu_h100_nodes() -> None:
    nodes = [gpu_node(f"h100-{i}", "NVIDIA-H100-80GB-HBM3", 81559, 8) for i in range(3)]
    big = request("deepseek-ai/DeepSeek-V3", precision=Precision.FP8, max_seq_len=16384, concurrency=8)
    placed = place(big, inventory=Inventory.from_objects(nodes))
    assert placed.plan.fits
    assert (placed.plan.tensor_parallel, placed.plan.pipeline_parallel) == (8, 2)
    assert placed.placement.nodes == 2 and placed.plan.gpu_type == "H100-80GB"


def test_nothing_fits_refuses_with_the_closest_plan() -> None:
    placed = place(
        request("meta-llama/Llama-3.1-405B-Instruct"),
        inventory=Inventory.from_objects([gpu_node("l4-0", "NVIDIA-L4", 23034, 1)]),
    )
    assert not placed.plan.fits and placed.plan.gpu_type == "L4"


def test_with_hami_on_a_node_hami_does_not_manage_keeps_whole_gpus() -> None:
    small = request("Qwen/Qwen3-0.6B", max_seq_len=2048, concurrency=4)
    plain = Inventory.from_objects([gpu_node("l4-0", "NVIDIA-L4", 23034, 1)])
    placed = place(small, inventory=plain, policy=PlacementPolicy(hami=True))
    assert placed.placement.hami_memory_mib is None and placed.plan.gpu_memory_bytes > 20 * 2**30
