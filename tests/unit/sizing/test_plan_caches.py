"""The planner keeps what a model's stages need (KV layout, overhead curve, weight rounding) across plans.
A kept figure must be the one computing it afresh gives: whatever was planned before, a plan is the same."""

from __future__ import annotations

from dataclasses import replace

from vramgate.sizing import Plan, PlanRequest, find_gpu, gpu_catalog, model_catalog, plan
from vramgate.sizing.engines import Engine
from vramgate.sizing.engines import vllm as vllm_engine
from vramgate.sizing.planner import _FIRST_ALIKE, _alike, _shared_shape, _stage_shape
from vramgate.sizing.precision import KvCacheDtype, Precision


def _requests() -> list[PlanRequest]:
    """Every catalog model over the whole field, and one model's requests that differ in a field each,
    so that a cache keyed without that field would hand one request another's figures."""
    requests = []
    for name, entry in sorted(model_catalog().items()):
        arch = entry.architecture()
        length = min(arch.max_position_embeddings or 8192, 8192)
        requests.append(PlanRequest(model=arch, model_source=name, max_seq_len=length, concurrency=16))
    base = requests[0]
    l4 = find_gpu("L4")
    requests += [
        replace(base, concurrency=17),
        replace(base, max_seq_len=base.max_seq_len // 2),
        replace(base, kv_cache_dtype=KvCacheDtype.FP8),
        replace(base, precision=Precision.FP8),
        replace(base, engine=Engine.SGLANG),
        replace(base, engine_version="0.19.0"),
        replace(base, engine_version="0.21.0"),
        replace(base, pipeline_parallel=2),
        replace(base, block_size=32),
        replace(base, max_num_batched_tokens=4096),
        replace(base, max_num_seqs=64),
        replace(base, memory_fraction=0.9),
        replace(base, overhead_bytes_override=2 << 30),
        replace(base, gpu=l4, gpu_count=1),
        replace(base, gpu=l4, gpu_count=1, max_num_seqs=64),
    ]
    return requests


def _afresh(request: PlanRequest, alternatives: bool = True) -> Plan:
    _stage_shape.cache_clear()
    _shared_shape.cache_clear()
    _alike.cache_clear()
    _FIRST_ALIKE.clear()
    vllm_engine._weight_rounding_bytes.cache_clear()
    vllm_engine._capture_profile.cache_clear()
    return plan(request, alternatives=alternatives)


def test_a_plan_is_the_same_whatever_was_planned_before() -> None:
    requests = _requests()
    afresh = [_afresh(request) for request in requests]
    # Planned again in the opposite order, each after every other request has filled the caches.
    kept = [plan(request) for request in reversed(requests)][::-1]
    for request, computed, reused in zip(requests, afresh, kept, strict=True):
        assert reused == computed, request


def test_gpu_types_that_share_a_shape_get_their_own_context_and_sampler_buffer() -> None:
    """GPU types running an engine alike share one stage shape, computed on the first of them; each one's
    CUDA context and SM count must still be its own, as computing its shape alone gives."""
    base = _requests()[0]
    requests = [
        replace(base, gpu=gpu, gpu_count=1, **changes)
        for changes in ({}, {"engine": Engine.SGLANG}, {"engine": Engine.TGI}, {"engine_version": "0.19.0"})
        for gpu in gpu_catalog().values()
    ]
    alone = [_afresh(request, alternatives=False) for request in requests]
    shared = [plan(request, alternatives=False) for request in reversed(requests)][::-1]
    for request, computed, reused in zip(requests, alone, shared, strict=True):
        assert reused == computed, request
