"""What the API server counts about itself (`/metrics`): writes by verb and resource, webhook time.

Counting on the server side catches every request, whoever makes it, which a client-side count would
miss (kopf's own patches and events, retries).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from support.kubectl import kubectl

WRITE_VERBS = frozenset({"APPLY", "PATCH", "POST", "PUT", "DELETE", "UPDATE"})
Requests = dict[tuple[str, str, str], float]
"""Request counts by (verb, resource, subresource)."""


def scrape(kubeconfig: Path) -> str:
    return kubectl("get", "--raw", "/metrics", kubeconfig=kubeconfig).stdout


def api_writes(
    kubeconfig: Path, objects: Collection[tuple[str, str]] | None = None, *, text: str | None = None
) -> Requests:
    """apiserver_request_total for write verbs, by (verb, resource, subresource); only the
    (resource, subresource) pairs in `objects` when given."""
    counts: Requests = {}
    for family in text_string_to_metric_families(scrape(kubeconfig) if text is None else text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "apiserver_request_total" or labels.get("verb") not in WRITE_VERBS:
                continue
            if labels.get("dry_run"):  # server-side dry runs (kubectl --dry-run=server, probes) store nothing
                continue
            target = (labels.get("resource", ""), labels.get("subresource", ""))
            if objects is not None and target not in objects:
                continue
            key = (labels["verb"], *target)
            counts[key] = counts.get(key, 0.0) + float(sample.value)
    return counts


def writes_since(before: Requests, after: Requests) -> dict[str, int]:
    """The difference, keyed "VERB/resource[/subresource]", without the unchanged counts."""
    return {
        "/".join(filter(None, key)): int(after[key] - before.get(key, 0.0))
        for key in sorted(after)
        if after[key] != before.get(key, 0.0)
    }


def webhook_seconds(text: str) -> tuple[float, float]:
    """(sum of seconds, calls) of the validating webhooks, as the API server timed them."""
    total = calls = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("type") != "validating":
                continue
            if sample.name == "apiserver_admission_webhook_admission_duration_seconds_sum":
                total += float(sample.value)
            elif sample.name == "apiserver_admission_webhook_admission_duration_seconds_count":
                calls += float(sample.value)
    return total, calls
