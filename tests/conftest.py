"""Options shared by the whole suite."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI explores the same examples on every run, so a red build is reproducible; locally each run
# explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

KUBECONFIG_ENV = "VRAMGATE_TEST_KUBECONFIG"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get(KUBECONFIG_ENV),
        help=(
            "run the e2e tests against the cluster of this kubeconfig instead of starting a local "
            f"control plane (default: ${KUBECONFIG_ENV})"
        ),
    )
