"""Leader election on a coordination.k8s.io Lease: one replica reconciles, the others stand by.

kopf's peering was not used: it pauses every watch of a paused operator (a standby would stop feeding
what admission reads too), it has no lock (two peers of equal priority both pause, a new peer of higher
priority acts before the old one has seen it), and each replica needs its own priority. A Lease gives
the usual client-go guarantees instead:

* a candidate takes the Lease only when it is free, released, or unrenewed for `leaseDurationSeconds`
  as observed on its own clock, and writes with the resourceVersion it read (optimistic concurrency:
  of two racing candidates, one gets a conflict);
* the leader renews every `retry` seconds and stops leading when it has not renewed for
  `renew_deadline` (half the lease), and has the other half to stop before anyone can take over
  (kopf needs a few seconds to wind down its handlers);
* a graceful stop releases the Lease, so a standby takes over within `retry` seconds; after a crash,
  within `leaseDurationSeconds + retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vramgate.handlers import kube

logger = logging.getLogger(__name__)
REQUEST_TIMEOUT_SECONDS = 3
RENEW_DEADLINE_FRACTION = 0.5


def stop_within(lease_seconds: int) -> float:
    """How long a replica that lost the Lease has to stop acting: from its renew deadline to the
    earliest moment another replica may take over, less a second for clocks and requests."""
    return max(1.0, lease_seconds * (1 - RENEW_DEADLINE_FRACTION) - 1)


COORDINATION = "coordination.k8s.io"


def default_identity() -> str:
    """Host and process: unique per process, readable in `kubectl get lease -o yaml`."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseElector:
    """Campaigns for the Lease `namespace/name` and calls `lead` while holding it."""

    api: client.ApiClient
    name: str
    namespace: str
    identity: str
    lease_seconds: int = 15
    _observed: tuple[str, float] | None = field(default=None, init=False)  # (resourceVersion, when seen)

    @property
    def renew_deadline(self) -> float:
        return self.lease_seconds * RENEW_DEADLINE_FRACTION

    @property
    def retry(self) -> float:
        return max(0.5, self.lease_seconds / 7)

    async def run(self, stop: asyncio.Event, lead: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Until `stop`: acquire the Lease, then await `lead(lost)`, which must return soon after
        `lost` is set (the Lease could not be renewed in time) or `stop` is; then campaign again.
        The Lease is released once `lead` has returned after `stop`."""
        while not stop.is_set():
            if not await self._acquire(stop):
                return
            logger.info(f"{self.identity} leads (Lease {self.namespace}/{self.name})")
            lost = asyncio.Event()
            renewing = asyncio.create_task(self._renew(lost, stop), name="lease renewal")
            try:
                await lead(lost)
            finally:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
                if not lost.is_set():
                    await self._release()
            if lost.is_set():
                logger.warning(f"{self.identity} lost the Lease {self.namespace}/{self.name}; standing by")

    async def _acquire(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._try_acquire_or_renew):
                    return True
            except kube.CALL_ERRORS as error:
                logger.info(f"Lease {self.namespace}/{self.name} not acquired yet: {error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry)
        return False

    async def _renew(self, lost: asyncio.Event, stop: asyncio.Event) -> None:
        renewed = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(self.retry)
            try:
                if await asyncio.to_thread(self._try_acquire_or_renew):
                    renewed = time.monotonic()
                    continue
                logger.warning(f"Lease {self.namespace}/{self.name} taken by another replica")
                lost.set()
                return
            except kube.CALL_ERRORS as error:
                logger.warning(f"Lease {self.namespace}/{self.name} not renewed: {error}")
            if time.monotonic() - renewed >= self.renew_deadline:
                lost.set()
                return

    def _read(self) -> dict[str, Any] | None:
        try:
            found = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                COORDINATION, "v1", self.namespace, "leases", self.name,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return kube.as_dict(found)

    def _write(self, lease: dict[str, Any]) -> bool:
        """Create the Lease, or replace it at the resourceVersion read; False when another replica
        wrote first (409)."""
        api = client.CustomObjectsApi(self.api)
        body = {"apiVersion": f"{COORDINATION}/v1", "kind": "Lease", **lease}
        try:
            if "resourceVersion" in lease["metadata"]:
                api.replace_namespaced_custom_object(
                    COORDINATION, "v1", self.namespace, "leases", self.name, body,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )  # fmt: skip
            else:
                api.create_namespaced_custom_object(
                    COORDINATION, "v1", self.namespace, "leases", body,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )  # fmt: skip
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _spec(self, acquire_time: str | None, transitions: int) -> dict[str, Any]:
        now = _micro_time(datetime.datetime.now(datetime.UTC))
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _try_acquire_or_renew(self) -> bool:
        """One attempt (blocking): True when this replica holds the Lease afterwards."""
        lease = self._read()
        metadata = {"name": self.name, "namespace": self.namespace}
        if lease is None:
            return self._write({"metadata": metadata, "spec": self._spec(None, 0)})
        spec = lease.get("spec") or {}
        version = str(lease["metadata"]["resourceVersion"])
        now = time.monotonic()
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, now)
        holder = spec.get("holderIdentity") or ""
        mine = holder == self.identity
        if holder and not mine:
            duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
            if now - self._observed[1] < duration:
                return False  # held, and renewed within its duration as far as this clock can tell
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        new_spec = self._spec(spec.get("acquireTime") if mine else None, transitions)
        return self._write({"metadata": {**metadata, "resourceVersion": version}, "spec": new_spec})

    async def _release(self) -> None:
        """Give the Lease up at once, so a standby need not wait out its duration."""

        def release() -> None:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            metadata = {k: lease["metadata"][k] for k in ("name", "namespace", "resourceVersion")}
            spec = {"leaseDurationSeconds": 1, "leaseTransitions": lease["spec"].get("leaseTransitions", 0)}
            self._write({"metadata": metadata, "spec": spec})

        try:
            await asyncio.to_thread(release)
            logger.info(f"{self.identity} released the Lease {self.namespace}/{self.name}")
        except kube.CALL_ERRORS as error:
            logger.warning(f"Lease {self.namespace}/{self.name} not released (it expires by itself): {error}")
