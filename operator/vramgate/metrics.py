"""Prometheus metrics: how many specs were sized, how many refused, how long admission and reconciling
take, and which build is running (so a dashboard can tell a rollout apart from a regression)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from vramgate import __version__

PLANS = Counter(
    "vramgate_plans_total",
    "LLMDeployment specs sized, by where (admission, reconcile) and outcome (fits, too-big, invalid).",
    ["source", "outcome"],
)
REJECTIONS = Counter(
    "vramgate_admission_rejections_total",
    "LLMDeployment create/update requests refused by the webhook, by reason (too-big, invalid).",
    ["reason"],
)
RECONCILE_SECONDS = Histogram(
    "vramgate_reconcile_duration_seconds",
    "Time to size an LLMDeployment and apply its Deployment and Service.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

ADMISSION_SECONDS = Histogram(
    "vramgate_admission_duration_seconds",
    "Time the webhook takes to decide one LLMDeployment create/update, by outcome.",
    ["outcome"],
    # Admission sits on every `kubectl apply`: resolve the low milliseconds where plans land.
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BUILD_INFO = Gauge("vramgate_build_info", "Always 1; the running vramgate's version as a label.", ["version"])
BUILD_INFO.labels(version=__version__).set(1)


def outcome(allowed: bool, invalid_field: str | None) -> str:
    """One word for a decision: fits, too-big (valid but over the GPUs) or invalid (a bad field)."""
    if allowed:
        return "fits"
    return "invalid" if invalid_field is not None else "too-big"


def serve(port: int) -> None:
    """Serve /metrics on `port` in a background thread (0: not at all)."""
    if port:
        start_http_server(port)
