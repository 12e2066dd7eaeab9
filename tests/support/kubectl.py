"""Run kubectl and helm the way a user would, against the cluster under test.

The binaries come from the control-plane build (so their version matches the API server)
and fall back to ``PATH`` when testing an existing cluster without a local build.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support.controlplane import ControlPlaneError, find_assets_dir

COMMAND_TIMEOUT_SECONDS = 120


def tool_path(name: str) -> str:
    """The built ``name`` binary if there is one, else the one on ``PATH``."""
    try:
        return str(find_assets_dir(required=(name,)) / name)
    except ControlPlaneError:
        if found := shutil.which(name):
            return found
        raise


def run_tool(
    name: str, *args: str, kubeconfig: Path, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``name`` with ``--kubeconfig``; with ``check``, a failure raises an AssertionError
    carrying the command and its output, which is what a failing test should show."""
    command = [tool_path(name), "--kubeconfig", str(kubeconfig), *args]
    result = subprocess.run(
        command, input=input, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def kubectl(
    *args: str, kubeconfig: Path, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_tool("kubectl", *args, kubeconfig=kubeconfig, input=input, check=check)


def helm(*args: str, kubeconfig: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_tool("helm", *args, kubeconfig=kubeconfig, check=check)
