"""Errors the sizing core raises for bad input: each names the field, the value and what is allowed."""

from __future__ import annotations


class SizingError(ValueError):
    """Input that cannot be sized. `field` is the path a user would fix (a CLI flag or a config key)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class OutOfBoundsError(SizingError):
    """A record built outside the core's bounds (`field` is the record's field name); input checked at
    the boundary never gets here."""
