"""Fake GPU nodes, so the real scheduler can place GPU pods without GPUs or a kubelet.

A node carries the labels NVIDIA GPU Feature Discovery would put on it, the ``nvidia.com/gpu``
extended resource the device plugin would advertise, and a Ready condition. The scheduler
then binds pods to it like to a real node; the pods never run, since no kubelet exists.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from kubernetes import client

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
# Explicit, because the client's default content type for a dict body varies by version.
MERGE_PATCH = "application/merge-patch+json"


def register_gpu_node(
    api: client.ApiClient,
    name: str,
    product: str = "NVIDIA-A10G",
    memory_mib: int = 23028,
    count: int = 1,
    *,
    cpu: str = "8",
    memory: str = "32Gi",
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
    resources: Mapping[str, str] | None = None,
) -> client.V1Node:
    """Create a schedulable node with ``count`` GPUs of ``product`` (``memory_mib`` each).

    Three steps, because the API server fills in what a kubelet would otherwise own: the
    node is created, then its status (capacity, allocatable, Ready=True) is written
    through the status subresource, then the taints are cleared: the TaintNodesByCondition
    admission plugin adds ``not-ready`` on creation, and no node lifecycle controller runs
    locally to remove it.
    """
    core = client.CoreV1Api(api)
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    PRODUCT_LABEL: product,
                    MEMORY_LABEL: str(memory_mib),
                    COUNT_LABEL: str(count),
                    **(labels or {}),
                },
            )
        )
    )
    # `resources` adds or overrides extended resources: MIG profiles (mixed strategy), HAMi's gpumem.
    advertised = {
        "cpu": cpu,
        "memory": memory,
        "pods": str(pods),
        GPU_RESOURCE: str(count),
        **(resources or {}),
    }
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    core.patch_node_status(
        name,
        {
            "status": {
                "capacity": advertised,
                "allocatable": advertised,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "FakeGpuNode",
                        "message": "registered by the tests; no kubelet runs",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            }
        },
        _content_type=MERGE_PATCH,
    )
    node: client.V1Node = core.patch_node(name, {"spec": {"taints": None}}, _content_type=MERGE_PATCH)
    return node
