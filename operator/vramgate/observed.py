"""Planned against observed: the KV-cache capacity a running engine reports, next to the plan's (pure).

Once a generated server is Ready the operator reads, once per plan, where each engine states how many
tokens its KV cache holds, and records it beside the planned capacity. Every running deployment so
becomes a calibration point, and one that got less memory than planned says so with an Event.

Where each engine states it (at the releases vramgate generates for):
- vLLM: /metrics, gauge ``vllm:cache_config_info``, labels ``num_gpu_blocks`` x ``block_size``
  (vllm/v1/metrics/loggers.py, CacheConfig.metrics_info()).
- SGLang: /get_server_info, ``max_total_num_tokens`` (the token pool the scheduler allocated).
- TGI: /info, ``max_batch_total_tokens`` (what the warmup found room for; the router's Info).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vramgate.sizing.engines.base import Engine

CAPACITY_MISMATCH = "CapacityMismatch"
CAPACITY_OBSERVED = "CapacityObserved"


class ObservationError(ValueError):
    """The engine's answer did not state its KV capacity; the message says what was missing."""


def _label(labels: str, name: str) -> int:
    match = re.search(rf'(?:^|,)\s*{name}="([0-9]+)"', labels)
    if match is None:
        raise ObservationError(f"vllm:cache_config_info has no numeric {name} label")
    return int(match.group(1))


def vllm_tokens(metrics_text: str) -> int:
    """num_gpu_blocks x block_size from vLLM's Prometheus text."""
    for line in metrics_text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            labels = line[line.index("{") + 1 : line.rindex("}")]
            return _label(labels, "num_gpu_blocks") * _label(labels, "block_size")
    raise ObservationError("no vllm:cache_config_info in /metrics")


def _json_field(name: str) -> Callable[[str], int]:
    def tokens(body: str) -> int:
        try:
            value = json.loads(body)[name]
        except (ValueError, KeyError, TypeError) as error:
            raise ObservationError(f"no {name} in the answer") from error
        if not isinstance(value, int) or isinstance(value, bool):
            raise ObservationError(f"{name} is not an integer: {value!r}")
        return value

    return tokens


@dataclass(frozen=True)
class CapacitySource:
    path: str
    what: str  # how the figure is named in the status and events
    tokens: Callable[[str], int]


SOURCES: dict[Engine, CapacitySource] = {
    Engine.VLLM: CapacitySource(
        "/metrics", "vllm:cache_config_info num_gpu_blocks x block_size", vllm_tokens
    ),
    Engine.SGLANG: CapacitySource(
        "/get_server_info", "max_total_num_tokens", _json_field("max_total_num_tokens")
    ),
    Engine.TGI: CapacitySource("/info", "max_batch_total_tokens", _json_field("max_batch_total_tokens")),
}


def capacity_status(
    *, planned: int, observed: int, source: CapacitySource, pod: str, generation: int | None, now: str
) -> dict[str, Any]:
    """The status block: planned and observed tokens, and the relative error (observed - planned)/planned."""
    return {
        "plannedTokens": planned,
        "observedTokens": observed,
        "relativeError": round((observed - planned) / planned, 4) if planned else 0.0,
        "source": source.what,
        "pod": pod,
        "observedGeneration": generation,
        "observedAt": now,
    }


def falls_short(planned: int, observed: int, threshold: float) -> bool:
    """True when the engine got less than the plan by more than ``threshold`` (a fraction)."""
    return observed < planned * (1.0 - threshold)


def summary(capacity: dict[str, Any]) -> str:
    return (
        f"KV cache planned {capacity['plannedTokens']} tokens, engine reports {capacity['observedTokens']} "
        f"({capacity['relativeError']:+.1%}; {capacity['source']} from pod {capacity['pod']})"
    )
