"""The operator process's own tuning: what it does to the interpreter once start-up is over."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from vramgate.operator import freeze_start_up_objects


@pytest.fixture
def restored_collector() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_left_out_of_later_collections() -> None:
    built_at_start = {"catalog": [{"gpu": "A10G"}]}
    freeze_start_up_objects()
    assert gc.get_freeze_count() > 0
    # A full collection no longer scans what start-up built: it is in no generation.
    assert not any(built_at_start is tracked for tracked in gc.get_objects())


@pytest.mark.usefixtures("restored_collector")
def test_garbage_cycles_made_after_start_up_are_still_collected() -> None:
    freeze_start_up_objects()
    node = _Node()
    node.next = node
    collected = weakref.ref(node)
    del node
    gc.collect()
    assert collected() is None


class _Node:
    next: _Node | None = None
