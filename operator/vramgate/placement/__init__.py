"""Placement: the cluster's GPUs (from node labels and bound pods) and the rules that choose among them.

Pure like the sizing core: plain Node and Pod mappings in, a plan and its placement out. The operator,
the admission webhook and `vramgate plan --nodes` share it.
"""

from vramgate.placement.inventory import (
    GPU_RESOURCE,
    HAMI_MEMORY_RESOURCE,
    OWNER_LABEL,
    PRODUCT_LABEL,
    GpuTarget,
    Inventory,
    TargetKind,
    mig_profiles,
)
from vramgate.placement.rules import (
    LEADER_WORKER_SET_SUFFIX,
    Placed,
    Placement,
    PlacementMode,
    PlacementPolicy,
    Preference,
    Skipped,
    place,
    placement_holds,
)

__all__ = [
    "GPU_RESOURCE",
    "HAMI_MEMORY_RESOURCE",
    "LEADER_WORKER_SET_SUFFIX",
    "OWNER_LABEL",
    "PRODUCT_LABEL",
    "GpuTarget",
    "Inventory",
    "Placed",
    "Placement",
    "PlacementMode",
    "PlacementPolicy",
    "Preference",
    "Skipped",
    "TargetKind",
    "mig_profiles",
    "place",
    "placement_holds",
]
