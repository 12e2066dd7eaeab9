"""The reconciler's copy of the live objects: listed page by page, never set back by a stale event."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from vramgate.handlers import live


def _object(name: str, generation: int, uid: str = "u") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": uid,
            "generation": generation,
            "managedFields": [{}],
        },
        "spec": {"replicas": 1},
    }


def test_a_list_is_read_page_by_page_until_no_continue_token() -> None:
    names = [f"m{i}" for i in range(250)]
    asked: list[dict[str, Any]] = []

    def list_call(**options: Any) -> SimpleNamespace:
        asked.append(options)
        start = int(options["_continue"] or 0)
        end = start + options["limit"]
        metadata = {"continue": str(end)} if end < len(names) else {}
        page = {"items": [_object(n, 1) for n in names[start:end]], "metadata": metadata}
        return SimpleNamespace(data=json.dumps(page).encode())

    objects = live.LiveObjects()
    objects.fill(live._pages(list_call))
    assert len(objects.values()) == 250
    assert [a["_continue"] for a in asked] == [None, "100", "200"]
    assert all(a["limit"] == live.LIST_CHUNK and a["_preload_content"] is False for a in asked)
    assert "managedFields" not in (objects.get("ns", "m0") or {})["metadata"]


def test_an_event_older_than_the_applied_generation_is_refused() -> None:
    objects = live.LiveObjects()
    objects.record(_object("m", 3))
    assert not objects.observe("MODIFIED", _object("m", 2))
    assert (objects.get("ns", "m") or {})["metadata"]["generation"] == 3


def test_a_recreated_object_replaces_the_old_one_whatever_its_generation() -> None:
    objects = live.LiveObjects()
    objects.record(_object("m", 7, uid="old"))
    assert objects.observe("ADDED", _object("m", 1, uid="new"))
    assert (objects.get("ns", "m") or {})["metadata"]["uid"] == "new"


def test_a_deletion_forgets_the_object() -> None:
    objects = live.LiveObjects()
    objects.record(_object("m", 1))
    objects.observe("DELETED", _object("m", 1))
    assert objects.get("ns", "m") is None
