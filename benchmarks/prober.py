"""Admission probes from a process of their own: what another client of the cluster waits for.

A probe is a server-side dry-run create (the API server admits it, calls the webhook, stores nothing).
The probes run in a child process with its own API client because a thread of the benchmark would time
its own process too: the thread that creates the load holds the GIL for much of each request (the
client's serialisation), and a probe thread waiting for it adds up to a switch interval (5 ms) at each
of its own hand-offs, which no user of the cluster waits for.

Each target is probed in turn; a target's body decides whether the webhook is on its path (a namespace
the webhook covers) or not (kube-system, which it never covers: the API server's own time at that load).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vramgate.spec import GROUP, PLURAL, VERSION


@dataclass(frozen=True)
class Target:
    """One kind of probe: a resource to dry-run create, and whether the webhook refuses it."""

    name: str
    body: dict[str, Any]
    refused: bool = False


class Prober:
    """Probes `targets` round-robin from a child process until stopped or `count` probes were sent,
    `interval` seconds apart: `with Prober(...) as prober: ...; prober.summary("fits")`."""

    def __init__(
        self, kubeconfig: Path, targets: list[Target], *, interval: float = 0.0, count: int | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding client threads
        self._stop = context.Event()
        self._results, child_end = context.Pipe(duplex=False)
        arguments = (str(kubeconfig), targets, interval, count, self._stop, child_end)
        self._process = context.Process(target=_probe, args=arguments, daemon=True)
        self._count = count
        self.latencies: dict[str, list[float]] = {}
        self.failures: dict[str, int] = {}

    def __enter__(self) -> Prober:
        self._process.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop (with a count: wait for the last probe) and collect what the child measured."""
        if self._count is None:
            self._stop.set()
        self.latencies, self.failures = self._results.recv()
        self._process.join()

    def summary(self, target: str) -> dict[str, Any]:
        """Calls, failures, and the round trips' p50 and p99 in ms, of one target's probes."""
        found = sorted(self.latencies.get(target, []))
        failures = self.failures.get(target, 0)
        if not found:
            return {"calls": 0, "failures": failures}
        return {
            "calls": len(found),
            "failures": failures,
            "p50_ms": round(1000 * statistics.median(found), 1),
            "p99_ms": round(1000 * found[min(len(found) - 1, round(0.99 * (len(found) - 1)))], 1),
        }


def _probe(
    kubeconfig: str,
    targets: list[Target],
    interval: float,
    count: int | None,
    stop: Event,
    results: Connection,
) -> None:
    """The child: probe until stopped; send {target: round trips in s} and {target: failures} back."""
    api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    objects = client.CustomObjectsApi(api)
    latencies: dict[str, list[float]] = {target.name: [] for target in targets}
    failures = dict.fromkeys(latencies, 0)
    for target in targets:  # the connection and the API server's first request of a kind, untimed
        _create(objects, target)
    sent = 0
    while not stop.is_set() and (count is None or sent < count):
        target = targets[sent % len(targets)]
        started = time.perf_counter()
        if _create(objects, target):
            latencies[target.name].append(time.perf_counter() - started)
        else:
            failures[target.name] += 1
        sent += 1
        stop.wait(interval)
    api.close()
    results.send((latencies, failures))


def _create(objects: client.CustomObjectsApi, target: Target) -> bool:
    """One dry-run create; whether the API server answered as `target` expects."""
    namespace = target.body["metadata"]["namespace"]
    try:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, target.body, dry_run="All")
    except ApiException as error:
        return target.refused and "denied the request" in str(error.body)
    return not target.refused
