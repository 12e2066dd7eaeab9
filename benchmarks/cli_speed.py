"""Whole-process cost of the command line, against kvfit (a peer planner on PyPI) in the same run.

Method: each command runs once to warm the page cache and write its bytecode (also where
PYTHONDONTWRITEBYTECODE is set: an install from a wheel compiles it, as pip did kvfit's), then as a fresh
process `--runs` times, the commands interleaved so that machine noise hits them alike; CPU time is the
child's user + system time (`resource.getrusage`), wall time is measured around the process. Medians are
reported, and ratios of medians. kvfit is installed once into
`.cache/bench-kvfit` from PyPI; its Hugging Face requests are answered in process from the same
config.json the catalog holds (no network), which only makes kvfit faster.

    python benchmarks/cli_speed.py [--runs 21]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KVFIT_VENV = ROOT / ".cache" / "bench-kvfit"
KVFIT_VERSION = "0.3.0"
MODEL = "tiiuae/falcon-7b"
WEIGHTS_BYTES = 14_484_000_000  # the safetensors size kvfit would read from the Hub's listing

# Runs kvfit with `kvfit.hf._fetch_json` answering from local files: config.json and a file listing.
KVFIT_STUB = """
import json, sys
import kvfit.hf as hf
config, weights = json.load(open(sys.argv[1])), int(sys.argv[2])
def fetch(url, **_):
    if url.endswith("/config.json"):
        return config
    return {"siblings": [{"rfilename": "model.safetensors", "size": weights}]}
hf._fetch_json = fetch
from kvfit.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _kvfit_python() -> Path:
    python = KVFIT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(KVFIT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"kvfit=={KVFIT_VERSION}"], check=True)
    return python


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()

    import yaml  # the catalog's config.json fields feed kvfit's stub

    catalog = yaml.safe_load((ROOT / "operator/vramgate/catalog/models.yaml").read_text(encoding="utf-8"))
    config = next(m["config"] for m in catalog["models"] if m["id"] == MODEL)
    vramgate = str(Path(sys.executable).with_name("vramgate"))
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(config), encoding="utf-8")
        commands = {
            "vramgate plan -o json": [
                *(vramgate, "plan", "--model", MODEL, "--max-seq-len", "1000"),
                *("--concurrency", "100", "--gpu", "H100-80GB", "-o", "json"),
            ],
            "vramgate --help": [vramgate, "--help"],
            "kvfit (stubbed Hub)": [
                *(str(_kvfit_python()), "-c", KVFIT_STUB, str(config_file), str(WEIGHTS_BYTES), MODEL),
                *("--hardware", "h100-80", "--context", "1000", "--concurrent-users", "100", "--json"),
            ],
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        compiling = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        for command in commands.values():
            _run(command, env=compiling)
        for _ in range(args.runs):
            for name, command in commands.items():
                samples[name].append(_run(command))
    medians = {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in samples.items()
    }
    print(f"{args.runs} runs each, interleaved; medians")
    for name, (wall, cpu) in medians.items():
        print(f"  {name:24} wall {wall * 1000:6.0f} ms   CPU {cpu * 1000:6.0f} ms")
    plan_cpu, kvfit_cpu = medians["vramgate plan -o json"][1], medians["kvfit (stubbed Hub)"][1]
    print(f"vramgate plan CPU / kvfit CPU: {plan_cpu / kvfit_cpu:.2f}x (target <= 1.5x)")
    print(f"vramgate --help wall: {medians['vramgate --help'][0] * 1000:.0f} ms (target <= 150 ms)")


if __name__ == "__main__":
    main()
