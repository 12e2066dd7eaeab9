"""Polling, because the cluster converges asynchronously (controllers, scheduler, GC)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], timeout: float = 30.0, message: str = "", interval: float = 0.2
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Raises ``TimeoutError`` with ``message`` and the last value seen, so a failing test says
    what it waited for and what it got instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{message or 'condition not met'} within {timeout:g}s (last value: {result!r})"
            )
        time.sleep(interval)


def stays(condition: Callable[[], bool], seconds: float, message: str = "", interval: float = 0.5) -> None:
    """Check ``condition`` holds for ``seconds``: how a test shows that nothing happens (no update
    storm, no status ping-pong), since absence cannot be waited for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            raise AssertionError(f"{message or 'condition'} stopped holding")
        time.sleep(interval)


def settled(value: Callable[[], T], quiet_seconds: float, timeout: float = 60.0, message: str = "") -> T:
    """Poll ``value`` until it has not changed for ``quiet_seconds``, and return it: a controller
    has finished its follow-up writes (annotations, status) once its objects stop changing."""
    deadline = time.monotonic() + timeout
    current, since = value(), time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message or 'value'} still changing after {timeout:g}s (last: {current!r})")
        time.sleep(0.5)
        latest = value()
        if latest != current:
            current, since = latest, time.monotonic()
    return current
