"""The LeaderWorkerSet CRD as its project publishes it: read from the lws Go module at a pinned release.

The Go module proxy serves `sigs.k8s.io/lws` with its `config/crd/bases`, checksummed by the Go
toolchain (the one the control-plane build already needs), so the real CRD is installed without a copy
of it living in this repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

LWS_MODULE = "sigs.k8s.io/lws"
LWS_VERSION = "v0.9.0"
CRD_FILE = "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
DOWNLOAD_TIMEOUT_SECONDS = 300


def lws_crd_path() -> Path:
    """Path of the CRD in the Go module cache (downloaded once)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the LeaderWorkerSet CRD comes from its Go module: `go` must be on PATH")
    with tempfile.TemporaryDirectory() as outside_any_module:
        result = subprocess.run(
            [go, "mod", "download", "-json", f"{LWS_MODULE}@{LWS_VERSION}"],
            cwd=outside_any_module,
            capture_output=True,
            text=True,
            timeout=DOWNLOAD_TIMEOUT_SECONDS,
            check=False,
        )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Error" in info or "Dir" not in info:
        raise RuntimeError(
            f"go mod download {LWS_MODULE}@{LWS_VERSION}: {info.get('Error') or result.stderr}"
        )
    return Path(info["Dir"]) / CRD_FILE
