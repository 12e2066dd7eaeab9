"""The README shows real output: its calibration table is what `vramgate calibrate` prints today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vramgate.entry import main

ROOT = Path(__file__).parents[2]


def test_readme_calibration_table_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    main(["calibrate", str(ROOT / "benchmarks" / "calibration" / "vllm_startup_logs.csv")])
    printed = capsys.readouterr().out.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- calibration:begin -->\n(.*?)\n<!-- calibration:end -->", readme, re.S)
    assert block is not None, "README lost its calibration markers"
    assert block[1].strip() == printed, "README's calibration table is stale: paste `make calibration` output"
