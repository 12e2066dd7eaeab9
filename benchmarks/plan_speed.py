"""How long planning takes: one deployment with its whole field, pinned, refused, and 10,000 deployments.

Method: `time.perf_counter` around `plan()`, after one warm-up call (catalogs loaded, imports done).
One deployment = Llama-3.1-8B, 8192 tokens x 64 requests, GPU unpinned, so the planner evaluates every
GPU type at TP 1/2/4/8 and builds engine arguments for vLLM, TGI and SGLang; the same request again as a
request path asks for it (`alternatives=False`: the choice only, no field listed). Pinned = the same model,
16 requests on one H100, planned as a request path does (`alternatives=False`: no field listed).
Refused = 131072 tokens x 256 requests pinned to one L4, request path: the reason and every suggestion,
each checked. Each is timed 200 times and the median, 10th and 90th percentiles reported.
The batch = 10,000 requests drawn with a fixed seed
from the catalog's models, lengths 256-32768 and concurrencies 1-256, planned one after another,
repeated 3 times; the median run is reported. Run: `python benchmarks/plan_speed.py`.
"""

from __future__ import annotations

import platform
import random
import statistics
import time

from vramgate.sizing import GpuType, PlanRequest, find_gpu, gpu_catalog, load_model, model_catalog, plan


def _one(length: int = 8192, concurrency: int = 64, gpu: GpuType | None = None) -> PlanRequest:
    return PlanRequest(
        model=load_model("meta-llama/Llama-3.1-8B-Instruct"),
        model_source="meta-llama/Llama-3.1-8B-Instruct",
        max_seq_len=length,
        concurrency=concurrency,
        gpu=gpu,
        gpu_count=1 if gpu else None,
    )


def _timed(request: PlanRequest, alternatives: bool) -> str:
    plan(request, alternatives=alternatives)
    samples = []
    for _ in range(200):
        start = time.perf_counter()
        plan(request, alternatives=alternatives)
        samples.append(time.perf_counter() - start)
    deciles = statistics.quantiles(samples, n=10)
    return (
        f"median {statistics.median(samples) * 1e3:.2f} ms "
        f"(p10 {deciles[0] * 1e3:.2f}, p90 {deciles[-1] * 1e3:.2f}; 200 runs)"
    )


def _batch(count: int) -> list[PlanRequest]:
    rng = random.Random(20261126)
    models = [m.architecture() for m in model_catalog().values()]
    requests = []
    for _ in range(count):
        arch = rng.choice(models)
        limit = min(arch.max_position_embeddings or 32768, 32768)
        requests.append(
            PlanRequest(
                model=arch,
                model_source=arch.name,
                max_seq_len=rng.randint(256, limit),
                concurrency=rng.randint(1, 256),
            )
        )
    return requests


def main() -> None:
    options = len(gpu_catalog()) * 4
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"one plan, whole field ({options} GPU options, 3 engines' arguments): {_timed(_one(), True)}")
    print(f"one plan, GPU unpinned, request path: {_timed(_one(), False)}")
    pinned = _one(concurrency=16, gpu=find_gpu("H100-80GB"))
    print(f"one plan, pinned to 1 x H100, request path: {_timed(pinned, False)}")
    refused = _one(length=131072, concurrency=256, gpu=find_gpu("L4"))
    print(f"one refusal with its suggestions, pinned to 1 x L4, request path: {_timed(refused, False)}")
    batch = _batch(10_000)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        fitting = sum(plan(r).fits for r in batch)
        runs.append(time.perf_counter() - start)
    print(
        f"10,000 plans: median {statistics.median(runs):.1f} s over 3 runs "
        f"({statistics.median(runs) / 10_000 * 1e3:.2f} ms each; {fitting} fit)"
    )


if __name__ == "__main__":
    main()
