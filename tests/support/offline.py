"""`vramgate check -f` over many manifest files in one run: each file's verdict and message."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VRAMGATE = Path(sys.executable).with_name("vramgate")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str


def check_files(paths: list[Path]) -> dict[Path, Verdict]:
    """Run the installed `vramgate check` on `paths`, as CI or a GitOps hook would."""
    arguments = [str(VRAMGATE), "check"]
    for path in paths:
        arguments += ["-f", str(path)]
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode in (0, 1), f"vramgate check exited {result.returncode}: {result.stderr}"
    verdicts: dict[Path, Verdict] = {}
    for line in result.stdout.splitlines():
        for path in paths:
            for mark, allowed in (("ok", True), ("refused", False)):
                prefix = f"{path}: {mark}: "
                if line.startswith(prefix):
                    verdicts[path] = Verdict(allowed, line[len(prefix) :])
    assert set(verdicts) == set(paths), f"no verdict for {set(paths) - set(verdicts)}:\n{result.stdout}"
    return verdicts
