"""The operator process: `python -m vramgate.operator` (the image's entrypoint).

Every replica serves admission and runs the feeds admission reads; only the holder of the Lease
reconciles. Three parts, so that none waits for another:

* the main event loop: the admission server (`handlers.webhook`, planning in its own thread pool),
  the probes (/healthz, /readyz), the Lease election (`handlers.leader`) and `start_feeds`;
* kopf, in a thread of its own with its own event loop and executor, started when this replica
  becomes leader and stopped when it stops being leader (`Reconciler`);
* Prometheus metrics, in prometheus_client's thread.

Importing this module registers the reconcile handlers with kopf (`kopf run -m vramgate.operator`
still works for a single instance); admission is never kopf's.

Local mode lifecycle (a laptop, the tests): the leader writes the webhook configuration pointing at
itself, scoped to the watched namespaces (never kube-system). On a graceful stop it is left in place
(failurePolicy Fail): writes in watched namespaces are refused until an operator is back, never let
through unchecked; after a crash the same holds. Unwatched namespaces are never affected. Deleting the
configuration lets writes through unchecked; the next start re-checks every stored resource and turns
one that does not fit Rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vramgate import metrics
from vramgate.handlers import inventory, live, reconcile, webhook
from vramgate.handlers.kube import api_message, new_api_client, read_metadata
from vramgate.handlers.leader import LeaseElector, default_identity, stop_within
from vramgate.handlers.persistence import MemoryProgressStorage, ObservedGenerationDiffBase
from vramgate.settings import ENV_PREFIX, OperatorConfig, SettingsError, WebhookMode
from vramgate.spec import GROUP

__all__ = ["configure", "main", "reconcile", "run", "start_feeds"]

REPORTING_COMPONENT = "vramgate"
CONFIG = "config"  # key of the OperatorConfig in kopf's memo
WORKER_LIMIT = 200
_LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
logger = logging.getLogger("vramgate")


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's settings for vramgate: its own names on objects and events; no peering (the Lease
    decides who runs kopf) and no admission (served apart, `handlers.webhook`)."""
    settings.posting.reporting_component = REPORTING_COMPONENT
    # kopf would post an Event for every handler run ("succeeded", "processed"): a write per object on
    # each restart. Warnings and errors still become Events; decisions are posted with `kopf.event`,
    # which this level does not filter.
    settings.posting.level = logging.WARNING
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, reconcile.QuietEventHandlers) for f in objects.filters):
        objects.addFilter(reconcile.QuietEventHandlers())
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = MemoryProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = ObservedGenerationDiffBase()
    settings.peering.standalone = True
    # Only pods that hold GPUs matter (`reconcile.gpu_pod_changed`); the API server drops the rest, so
    # a thousand pending pods cost no events.
    settings.watching.field_selectors["pods"] = inventory.HOLDING_PODS
    settings.watching.chunk_size = live.LIST_CHUNK  # see `live._pages`
    # At most this many objects of a kind in hand at once (kopf's default: all of them). A catch-up of
    # 1,000 changed specs otherwise holds 1,000 events and handler states at once, for a handful of
    # executor threads; the peak stays in the process's memory.
    settings.queueing.worker_limit = WORKER_LIMIT
    if config.namespace_selector:
        # kopf lists and watches namespaces with this selector, so it serves exactly the labelled ones,
        # following labels as they change; the API server evaluates it.
        settings.watching.label_selectors["namespaces"] = config.namespace_selector
    settings.admission.server = None
    settings.admission.managed = None


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = memo.get(CONFIG) or OperatorConfig.from_environ()  # `kopf run -m vramgate.operator`
    configure(settings, config)
    memo[reconcile.API_CLIENT] = api = new_api_client()
    live.list_all(api, live.watched_namespaces(api, config))
    memo[reconcile.CAPACITY_THRESHOLD] = config.capacity_mismatch_threshold
    inventory.start_feed(config)  # `kopf run -m vramgate.operator`: nobody started it before


def freeze_start_up_objects() -> None:
    """Leave what start-up built and keeps for good (modules, kopf's, pydantic's and the client's
    classes and functions, the catalogs, a warm plan: about 150,000 objects) out of every later
    garbage collection. A full collection stops every thread, admission's included, for as long as it
    scans: with them, 0.1-0.75 s each on two busy cores, about once per 150 resources converging;
    without them it scans half as many objects at 1,000 resources. Cycles made later are still
    collected; start-up's own garbage goes first."""
    gc.collect()
    gc.freeze()


def check_namespace_selector(api: client.ApiClient, selector: str) -> None:
    """Have the API server parse the selector once, so a typo stops start-up with its reason instead
    of failing every namespace list afterwards."""
    if not selector:
        return
    try:
        client.CoreV1Api(api).list_namespace(label_selector=selector, limit=1)
    except ApiException as error:
        if error.status == 400:
            raise SettingsError(
                f"{ENV_PREFIX}NAMESPACE_SELECTOR {selector!r} is not a label selector: {api_message(error)}"
            ) from error
        raise


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    api = memo.get(reconcile.API_CLIENT)
    if api is not None:
        api.close()


class Reconciler:
    """kopf in a thread: its own event loop and executor, so its handlers never hold up admission,
    and stopping it (leadership lost) leaves the main loop's connections alone."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        # With a selector, kopf observes namespaces (all names, narrowed by the selector) instead of
        # watching cluster-wide.
        namespaces = self.config.namespaces or (("*",) if self.config.namespace_selector else ())
        kopf.run(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=self._stop,
            memo=kopf.Memo({CONFIG: self.config}),
        )

    async def stop(self, timeout: float) -> bool:
        """Ask kopf to stop; True when it did within `timeout` seconds."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join, timeout)
        return not self._thread.is_alive()

    async def exited(self) -> None:
        await asyncio.to_thread(self._thread.join)


def start_feeds(config: OperatorConfig) -> list[asyncio.Task[None]]:
    """What every replica runs whatever its role: the data admission reads (the GPU inventory, from
    watches on nodes and pods in threads of its own). Started before the election and never paused in
    a standby, so a standby answers admission with data as current as the leader's."""
    feed = inventory.start_feed(config)

    async def stop_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            feed.stop()

    return [asyncio.create_task(stop_when_cancelled(), name="inventory feed")]


class Operator:
    """One replica: admission and feeds always; reconciliation while it holds the Lease."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self.server: webhook.AdmissionServer | None = None
        self.files: webhook.ServingFiles | None = None
        self.reconciler: Reconciler | None = None
        self.api = new_api_client()

    async def run(self) -> None:
        await asyncio.to_thread(check_namespace_selector, self.api, self.config.namespace_selector)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        metrics.serve(self.config.metrics_port)
        probes = await self._serve_probes()
        feeds = start_feeds(self.config)
        try:
            if self.config.webhook_mode is not WebhookMode.NONE:
                scratch = Path(tempfile.mkdtemp(prefix="vramgate-webhook-"))
                self.files = webhook.serving_files(self.config, scratch)
                local = self.config.webhook_mode is WebhookMode.LOCAL
                self.server = webhook.AdmissionServer(
                    host=self.config.webhook_host if local else "0.0.0.0",
                    port=self.config.webhook_port,
                    files=self.files,
                    existing=functools.partial(read_metadata, self.api),
                )
                await self.server.start()
            freeze_start_up_objects()
            if not self.config.reconcile:  # admission only: no Lease, no kopf
                await self._register_webhook()
                await self.stopping.wait()
            elif self.config.leader_election:
                identity = self.config.identity or default_identity()
                elector = LeaseElector(
                    self.api,
                    self.config.lease_name,
                    self.config.lease_namespace,
                    identity,
                    self.config.lease_seconds,
                )
                await elector.run(self.stopping, self._lead)
            else:
                await self._lead(asyncio.Event())
        finally:
            for task in feeds:
                task.cancel()
            if self.server is not None:
                await self.server.stop()
            await probes.cleanup()
            self.api.close()  # type: ignore[no-untyped-call]
            if self.config.webhook_mode is WebhookMode.LOCAL and self.config.webhook_configuration:
                logger.info(
                    f"Left the webhook configuration {self.config.webhook_configuration} in place: "
                    "LLMDeployment writes in the watched namespaces are refused until the operator is "
                    "back (delete it to let them through unchecked)"
                )

    async def _lead(self, lost: asyncio.Event) -> None:
        """Reconcile until the Lease is lost or the process stops. If kopf does not stop within the
        margin between the renew deadline and the lease duration, exit: another replica may lead."""
        await self._register_webhook()
        self.reconciler = Reconciler(self.config)
        self.reconciler.start()
        waits = [
            asyncio.create_task(lost.wait()),
            asyncio.create_task(self.stopping.wait()),
            asyncio.create_task(self.reconciler.exited()),
        ]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if not self.reconciler.running and not (lost.is_set() or self.stopping.is_set()):
            logger.error("Reconciliation stopped by itself; exiting so that the replica restarts")
            os._exit(1)
        started = time.monotonic()
        margin = stop_within(self.config.lease_seconds) if lost.is_set() else self.config.lease_seconds
        if not await self.reconciler.stop(timeout=margin):
            logger.error("Reconciliation did not stop in time after leadership ended; exiting")
            os._exit(1)
        logger.info(f"Reconciliation stopped in {time.monotonic() - started:.1f} s")
        self.reconciler = None

    async def _register_webhook(self) -> None:
        """Point the webhook configuration at this process, where the operator manages it (local
        mode); in cluster the chart owns it."""
        if self.config.webhook_configuration and self.files is not None:
            configuration = webhook.webhook_configuration(
                self.config, webhook.client_config(self.config, self.files), os.environ.get("POD_NAMESPACE")
            )
            await asyncio.to_thread(webhook.register, self.api, configuration)

    async def _serve_probes(self) -> web.AppRunner:
        """/healthz: the loop answers and, when leading, kopf runs; /readyz: admission is served."""

        async def healthz(_: web.Request) -> web.Response:
            alive = self.reconciler is None or self.reconciler.running
            return web.Response(status=200 if alive else 500, text="ok" if alive else "reconciler stopped")

        async def readyz(_: web.Request) -> web.Response:
            ready = self.config.webhook_mode is WebhookMode.NONE or (
                self.server is not None and self.server.serving
            )
            return web.Response(status=200 if ready else 503, text="ok" if ready else "starting")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        if self.config.liveness_port:
            await web.TCPSite(runner, "0.0.0.0", self.config.liveness_port).start()
        return runner


def main(config: OperatorConfig) -> None:
    kopf.configure(log_format=_LOG_FORMATS[config.log_format])
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(Operator(config).run())
    except SettingsError as error:
        logger.error(str(error))
        sys.exit(2)


def run() -> None:
    """Run the operator with everything taken from the environment (the image's and the demo's way);
    a setting it cannot use stops it with one line naming the variable, and exit status 2."""
    try:
        config = OperatorConfig.from_environ()
    except SettingsError as error:
        print(f"vramgate: {error}", file=sys.stderr)
        sys.exit(2)
    main(config)


if __name__ == "__main__":
    run()
