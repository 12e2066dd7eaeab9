"""Where kopf keeps what it has handled: nowhere that costs a write.

kopf's defaults store the last handled spec (the diff base) and each handler's progress in annotations,
so every change costs one more patch of the LLMDeployment, and another admission call. Here the diff
base is read off the status the reconciler writes anyway (`status.observedGeneration`), and progress
lives in memory: it only matters while a handler retries, and after a restart the handler runs again
from the live objects. Only a retry after a delay writes (kopf's "touch" annotation, to wake itself).
"""

from __future__ import annotations

import threading
from typing import Any

import kopf


class ObservedGenerationDiffBase(kopf.DiffBaseStorage):
    """The spec was handled when the status says its generation was observed.

    kopf then sees an unobserved generation as a creation (and runs the create handlers), an observed
    one on first sight as a resume, and nothing otherwise; it never needs to store anything."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed is None or observed != body.get("metadata", {}).get("generation"):
            return None
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing to store: the reconciler's status write records the handled generation."""


class MemoryProgressStorage(kopf.AnnotationsProgressStorage):
    """Handler progress (retries, delays) per object in memory; kopf purges it when handling is done.

    Subclassing the annotations storage keeps its `touch`, the one write kopf needs to wake an
    object's handling after a delay."""

    def __init__(self, *, prefix: str) -> None:
        super().__init__(prefix=prefix)
        self._records: dict[tuple[str, str], kopf.ProgressRecord] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(body: kopf.Body, key: str) -> tuple[str, str]:
        return str(body.get("metadata", {}).get("uid")), key

    def fetch(self, *, key: Any, body: kopf.Body) -> kopf.ProgressRecord | None:
        with self._lock:
            return self._records.get(self._key(body, key))

    def store(self, *, key: Any, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch) -> None:
        with self._lock:
            self._records[self._key(body, key)] = record

    def purge(self, *, key: Any, body: kopf.Body, patch: kopf.Patch) -> None:
        with self._lock:
            self._records.pop(self._key(body, key), None)
