"""The cluster's GPU inventory, kept current by watching Nodes and Pods, for admission and reconcile.

It runs in threads of its own, one feed per process, started with the operator before any election
(`operator.start_feeds`), not as kopf handlers: every replica serves admission, and a standby replica
(which runs no kopf) must still judge against the cluster as it is. Free GPUs need the pods bound to
each node, so the operator lists and watches pods in all namespaces (RBAC get/list/watch on pods and
nodes; it keeps only the GPU requests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from vramgate.decision import LWS_CRD, DecisionContext
from vramgate.handlers.kube import new_api_client
from vramgate.images import ImagePolicy
from vramgate.placement import Inventory, PlacementMode, PlacementPolicy
from vramgate.placement.inventory import NodeGpus, PodGpus, parse_node, parse_pod
from vramgate.placement.rules import resolve_mode
from vramgate.settings import OperatorConfig

WATCH_SECONDS = 300  # a watch is re-opened after this long (the server ends it anyway)
RETRY_SECONDS = 5
LWS_CHECK_SECONDS = 15
# Pods that hold GPUs: bound to a node and not finished. A pod leaving the selection arrives as DELETED.
HOLDING_PODS = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"

logger = logging.getLogger(__name__)


def placement_policy(config: OperatorConfig) -> PlacementPolicy:
    mode = None if config.placement_mode == "auto" else PlacementMode(config.placement_mode)
    return PlacementPolicy(mode=mode, catalog_types=config.placement_catalog_types, hami=config.hami)


_running: dict[str, InventoryFeed] = {}  # the process's one feed, once started
_starting = threading.Lock()


def start_feed(config: OperatorConfig) -> InventoryFeed:
    """The process's feed, started on first call; admission and reconcile read it through
    `decision_context`. Logs the placement mode and the inventory it starts with."""
    with _starting:
        if "feed" not in _running:
            feed = _running["feed"] = InventoryFeed(new_api_client(), config)
            feed.start()
            context = feed.context()
            configured = context.placement.mode.value if context.placement.mode else "auto"
            in_use = resolve_mode(context.placement, context.inventory).value
            summary = context.inventory.summary() if context.inventory else "none"
            logger.info(f"Placement {configured} (in use: {in_use}); GPU inventory: {summary}")
        return _running["feed"]


def observe_event(kind: str, event: str, raw: dict[str, Any]) -> None:
    """Feed one Node or Pod event seen elsewhere (the leader's kopf watches) into the process's feed,
    so a decision taken on that event sees it; the feed's own watch delivers the same data later."""
    feed = _running.get("feed")
    if feed is None:
        return
    if kind == "Node":
        feed.on_node("DELETED" if event == "DELETED" else "MODIFIED", raw)
    elif kind == "Pod":
        feed.on_pod("DELETED" if event == "DELETED" else "MODIFIED", raw)


def decision_context() -> DecisionContext:
    """The context for a decision: the feed's snapshot, or the offline defaults before it starts."""
    feed = _running.get("feed")
    return feed.context() if feed is not None else DecisionContext()


class InventoryFeed:
    """Nodes and GPU-holding pods by name/uid, replaced as watch events arrive; `context()` is a
    consistent snapshot for one decision."""

    def __init__(self, api: client.ApiClient, config: OperatorConfig) -> None:
        self.api = api
        self.policy = placement_policy(config)
        self.skip_check_namespaces = config.skip_memory_check_namespaces
        self.image_policy = ImagePolicy.of(config.allowed_images) if config.allowed_images else ImagePolicy()
        self._nodes: dict[str, NodeGpus] = {}
        self._pods: dict[str, PodGpus] = {}
        self._lws: bool | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._snapshot: Inventory | None = None

    def inventory(self) -> Inventory:
        with self._lock:
            if self._snapshot is None:
                self._snapshot = Inventory(tuple(self._nodes.values()), tuple(self._pods.values()))
            return self._snapshot

    def context(self) -> DecisionContext:
        return DecisionContext(
            inventory=self.inventory(),
            placement=self.policy,
            skip_check_namespaces=self.skip_check_namespaces,
            lws_installed=self._lws,
            image_policy=self.image_policy,
        )

    def start(self) -> None:
        """List once (so the first admission already sees the cluster), then watch in the background."""
        core = client.CoreV1Api(self.api)
        node_version = self._relist_or_keep(self._relist_nodes, core, "")
        pod_version = self._relist_or_keep(self._relist_pods, core, "")
        self._check_lws()
        for name, target in (
            ("nodes", lambda: self._watch(core.list_node, self._relist_nodes, self.on_node, node_version)),
            ("pods", lambda: self._watch(self._list_pods, self._relist_pods, self.on_pod, pod_version)),
            ("lws", self._poll_lws),
        ):
            threading.Thread(target=target, name=f"vramgate-inventory-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _plain(self, obj: object) -> dict[str, Any]:
        plain: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain

    def _list_pods(self, **kwargs: Any) -> Any:
        return client.CoreV1Api(self.api).list_pod_for_all_namespaces(field_selector=HOLDING_PODS, **kwargs)

    def _relist_nodes(self, core: client.CoreV1Api) -> str:
        listed: Any = core.list_node()
        nodes = {}
        for item in listed.items:
            parsed = parse_node(self._plain(item))
            if parsed is not None:
                nodes[parsed.name] = parsed
        with self._lock:
            self._nodes, self._snapshot = nodes, None
        return str(listed.metadata.resource_version)

    def _relist_pods(self, core: client.CoreV1Api) -> str:
        listed = self._list_pods()
        pods = {}
        for item in listed.items:
            parsed = parse_pod(self._plain(item))
            if parsed is not None:
                pods[item.metadata.uid] = parsed
        with self._lock:
            self._pods, self._snapshot = pods, None
        return str(listed.metadata.resource_version)

    def on_node(self, kind: str, raw: dict[str, Any]) -> None:
        name = raw["metadata"]["name"]
        parsed = None if kind == "DELETED" else parse_node(raw)
        with self._lock:
            if parsed is None:
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = parsed
            self._snapshot = None

    def on_pod(self, kind: str, raw: dict[str, Any]) -> None:
        uid = raw["metadata"]["uid"]
        parsed = None if kind == "DELETED" else parse_pod(raw)
        with self._lock:
            if parsed is None:
                self._pods.pop(uid, None)
            else:
                self._pods[uid] = parsed
            self._snapshot = None

    def _watch(
        self,
        list_call: Callable[..., Any],
        relist: Callable[[client.CoreV1Api], str],
        on_event: Callable[[str, dict[str, Any]], None],
        version: str,
    ) -> None:
        """Watch from `version`; on an expired version (410) or a broken connection, list again."""
        core = client.CoreV1Api(self.api)
        while not self._stopping.is_set():
            try:
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    list_call,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=WATCH_SECONDS + 10,
                )
                for event in stream:
                    if self._stopping.is_set():
                        return
                    raw = self._plain(event["object"])
                    version = raw["metadata"].get("resourceVersion", version)
                    on_event(event["type"], raw)
            except ApiException as error:
                if error.status != 410:
                    logger.warning(f"inventory watch failed ({error.status} {error.reason}); listing again")
                    self._stopping.wait(RETRY_SECONDS)
                version = self._relist_or_keep(relist, core, version)
            except Exception as error:  # a dropped connection: the next list catches up
                logger.warning(f"inventory watch interrupted ({error}); listing again")
                self._stopping.wait(RETRY_SECONDS)
                version = self._relist_or_keep(relist, core, version)

    def _relist_or_keep(
        self, relist: Callable[[client.CoreV1Api], str], core: client.CoreV1Api, version: str
    ) -> str:
        try:
            return relist(core)
        except Exception as error:
            logger.warning(f"inventory list failed ({error}); retrying in {RETRY_SECONDS}s")
            return version

    def _check_lws(self) -> None:
        try:
            client.ApiextensionsV1Api(self.api).read_custom_resource_definition(LWS_CRD)
            self._lws = True
        except ApiException as error:
            self._lws = False if error.status == 404 else None
        except Exception:
            self._lws = None

    def _poll_lws(self) -> None:
        while not self._stopping.wait(LWS_CHECK_SECONDS):
            self._check_lws()
