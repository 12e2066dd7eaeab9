"""The live objects the reconciler decides against: generated Deployments and Services, and the
LLMDeployments, by namespace and name.

Not kopf's indices: kopf holds every object's handling until all indices are filled, on one condition
that every waiting object's worker is woken on for each object indexed, so a start with N objects costs
N² wake-ups (most of a 1,000-resource restart's CPU). Here each kind is listed once when kopf starts,
before its watches, and kopf's event handlers keep the copies current; nothing waits for anything.
An object deleted in the instant between that list and kopf's own is only noticed at its next event.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kubernetes import client

from vramgate import manifests
from vramgate.settings import OperatorConfig
from vramgate.spec import GROUP, PLURAL, VERSION

GENERATED_SELECTOR = f"app.kubernetes.io/managed-by={manifests.MANAGED_BY}"
LIST_CHUNK = 100  # objects per list page, here and in kopf's own lists (`operator.configure`)
Key = tuple[str, str]


def essentials(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the comparisons need of a live object: without managedFields, the bulk of it."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {
        "metadata": metadata,
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def _generation(body: Mapping[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("generation") or 0)


class LiveObjects:
    """One kind's objects as last seen, by (namespace, name); safe across kopf's executor threads.

    A copy never goes back to an older generation: a watch event can trail a write whose answer was
    already recorded (`record`), and acting on it would undo that write."""

    def __init__(self) -> None:
        self._items: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get((namespace, name))

    def values(self) -> list[dict[str, Any]]:
        """The objects as they stand now (a copy of the list: events may change it meanwhile)."""
        with self._lock:
            return list(self._items.values())

    def record(self, body: Mapping[str, Any]) -> bool:
        """Keep `body` unless a newer generation of the same object is known; False when it was older
        (a stale event)."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        with self._lock:
            known = self._items.get(key)
            same = known is not None and known["metadata"].get("uid") == metadata.get("uid")
            if same and known is not None and _generation(known) > _generation(body):
                return False
            self._items[key] = essentials(body)
        return True

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._items.pop((namespace, name), None)

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        """Apply a watch event; False for a stale one (see `record`)."""
        if event_type == "DELETED":
            self.forget(body["metadata"]["namespace"], body["metadata"]["name"])
            return True
        return self.record(body)

    def fill(self, items: Iterable[Mapping[str, Any]]) -> None:
        filled = {(i["metadata"]["namespace"], i["metadata"]["name"]): essentials(i) for i in items}
        with self._lock:
            self._items = filled


DEPLOYMENTS = LiveObjects()
SERVICES = LiveObjects()
LLMDEPLOYMENTS = LiveObjects()


def _items(response: Any) -> list[dict[str, Any]]:
    """The items of a list call made with `_preload_content=False`: plain JSON, no client models."""
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


def _pages(list_call: Callable[..., Any]) -> Iterator[Mapping[str, Any]]:
    """Every item of a list call, LIST_CHUNK at a time: a whole list of 1,000 full objects parsed at once
    is a peak of tens of MiB that the process keeps (fragmented) long after it is freed."""
    token = None
    while True:
        page = json.loads(list_call(limit=LIST_CHUNK, _continue=token, _preload_content=False).data)
        yield from page["items"]
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def watched_namespaces(api: client.ApiClient, config: OperatorConfig) -> list[str] | None:
    """The namespaces kopf serves now: those named, those the selector picks, or None for all."""
    if config.namespaces:
        return list(config.namespaces)
    if config.namespace_selector:
        listed = client.CoreV1Api(api).list_namespace(
            label_selector=config.namespace_selector, _preload_content=False
        )
        return [item["metadata"]["name"] for item in _items(listed)]
    return None


def list_all(api: client.ApiClient, namespaces: Iterable[str] | None) -> None:
    """Fill the three kinds from the API server: in `namespaces`, or cluster-wide when None."""
    apps, core, custom = client.AppsV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api)
    calls: list[tuple[LiveObjects, Callable[..., Any], Callable[..., Any]]] = [
        (
            DEPLOYMENTS,
            lambda **kw: apps.list_deployment_for_all_namespaces(label_selector=GENERATED_SELECTOR, **kw),
            lambda ns, **kw: apps.list_namespaced_deployment(ns, label_selector=GENERATED_SELECTOR, **kw),
        ),
        (
            SERVICES,
            lambda **kw: core.list_service_for_all_namespaces(label_selector=GENERATED_SELECTOR, **kw),
            lambda ns, **kw: core.list_namespaced_service(ns, label_selector=GENERATED_SELECTOR, **kw),
        ),
        (
            LLMDEPLOYMENTS,
            lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw),
            lambda ns, **kw: custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw),
        ),
    ]
    for objects, everywhere, within in calls:
        if namespaces is None:
            objects.fill(_pages(everywhere))
        else:
            objects.fill(item for ns in namespaces for item in _pages(functools.partial(within, ns)))
