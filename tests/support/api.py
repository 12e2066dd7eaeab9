"""Small conveniences over the kubernetes client for assertions and polling."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes.client.exceptions import ApiException


def exists(read: Callable[[], object]) -> bool:
    """Whether ``read`` (a ``read_*`` call) finds its object; errors other than 404 propagate."""
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
