"""Node and Pod objects as the API server returns them, for tests of the inventory and placement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vramgate.placement import GPU_RESOURCE, OWNER_LABEL

DATA = Path(__file__).resolve().parents[1] / "data" / "gfd"


def mig_nodes() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = yaml.safe_load((DATA / "a100-mig-strategies.yaml").read_text())["items"]
    return items


def gpu_node(name: str, product: str, memory_mib: int, count: int, **resources: str) -> dict[str, Any]:
    allocatable = {GPU_RESOURCE: str(count), "cpu": "8", **resources}
    return {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.memory": str(memory_mib),
                "nvidia.com/gpu.count": str(count),
            },
        },
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def gpu_pod(
    node: str | None, gpus: int, *, phase: str = "Running", owner: str | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "labels": {OWNER_LABEL: owner} if owner else {}},
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"limits": {GPU_RESOURCE: str(gpus), "cpu": "2"}}}],
        },
        "status": {"phase": phase},
    }
