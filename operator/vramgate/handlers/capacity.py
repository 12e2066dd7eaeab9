"""Read a Ready server's KV-cache capacity once and record it beside the plan's (see vramgate.observed).

The engine is read at its pod's address, as a Prometheus scrape would, not through the Service: any
one Ready replica states the capacity every replica was started with. A failed read is logged and not
retried for that plan: a missing figure must never hold up or flap the deployment.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from vramgate import manifests, observed
from vramgate.handlers import kube
from vramgate.sizing.engines.base import Engine

CAPACITY_FIELD_MANAGER = "vramgate-capacity"
READ_TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a /metrics page is tens of KiB; never read without a bound


def _ready_pod(api: client.ApiClient, deployment: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(name, address, server port) of one Ready pod of the Deployment, if any."""
    metadata = deployment["metadata"]
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    listed = client.CoreV1Api(api).list_namespaced_pod(metadata["namespace"], label_selector=selector)
    pods: list[dict[str, Any]] = api.sanitize_for_serialization(listed).get("items", [])  # type: ignore[no-untyped-call]
    for pod in pods:
        address = pod.get("status", {}).get("podIP")
        conditions = pod.get("status", {}).get("conditions") or []
        if address and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            for container in pod["spec"]["containers"]:
                for port in container.get("ports") or []:
                    if port.get("name") == manifests.HTTP_PORT_NAME:
                        return str(pod["metadata"]["name"]), str(address), int(port["containerPort"])
    return None


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=READ_TIMEOUT_SECONDS) as answer:
        return cast(bytes, answer.read(MAX_ANSWER_BYTES)).decode(errors="replace")


def observe(
    api: client.ApiClient,
    owner: Mapping[str, Any],
    deployment: Mapping[str, Any],
    *,
    threshold: float,
    now: str,
    logger: kopf.Logger,
) -> bool:
    """Read and record the capacity; True when the read is done (recorded, or failed for good)."""
    status = owner.get("status") or {}
    planned = (status.get("plan") or {}).get("kvCapacityTokens")
    engine = Engine(owner["spec"].get("runtime", {}).get("engine", Engine.VLLM.value))
    if not planned:
        return False  # the reconciler has not recorded the plan yet; the next event comes back
    found = _ready_pod(api, deployment)
    if found is None:
        return False
    pod, address, port = found
    source = observed.SOURCES[engine]
    name = f"{owner['metadata']['namespace']}/{owner['metadata']['name']}"
    try:
        tokens = source.tokens(_read(f"http://{address}:{port}{source.path}"))
    except (OSError, urllib.error.URLError, observed.ObservationError) as error:
        logger.warning(
            f"Could not read the KV-cache capacity of {name} from pod {pod} ({source.path}): {error}"
        )
        return True
    capacity = observed.capacity_status(
        planned=int(planned),
        observed=tokens,
        source=source,
        pod=pod,
        generation=owner["metadata"].get("generation"),
        now=now,
    )
    kube.apply_llmdeployment_status(
        api, owner["metadata"], {"capacity": capacity}, field_manager=CAPACITY_FIELD_MANAGER
    )
    body = kopf.Body(cast(kopf.RawBody, owner))
    if observed.falls_short(int(planned), tokens, threshold):
        kopf.warn(
            body,
            reason=observed.CAPACITY_MISMATCH,
            message=f"{observed.summary(capacity)}: more than {threshold:.0%} short of the plan",
        )
    else:
        kopf.event(body, type="Normal", reason=observed.CAPACITY_OBSERVED, message=observed.summary(capacity))
    return True
