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
