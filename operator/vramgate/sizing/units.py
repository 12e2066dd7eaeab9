"""Byte units. Everything is computed in bytes; GiB (1024**3) only appears when shown to a person."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3


def format_gib(n_bytes: float, digits: int = 2) -> str:
    """`12.34 GiB`: the one way vramgate prints a memory figure."""
    return f"{n_bytes / GIB:.{digits}f} GiB"


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling division (no float rounding on huge token counts)."""
    return -(-numerator // denominator)
