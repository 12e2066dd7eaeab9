"""Admission latency as the API server measures it, idle and while resources converge.

Method: a local control plane (tests/support) and the operator as users run it (`python -m
vramgate.operator`, webhook in local mode), in two processes as the chart's pod runs it: one serves
admission, the other reconciles. A probe is a server-side dry-run create of an
LLMDeployment (the API server calls the webhook, stores nothing, so probing adds no load), sent from a
process of its own (`prober.py`); probes alternate between one that fits (examples/falcon-7b-a10g.yaml)
and one refused (examples/llama-3.1-70b-too-big.yaml). Two phases in one run:

* idle: `--probes` probes, nothing else happening;
* converging: `--load` resources are created as fast as one client thread can, and the operator
  plans and applies each one's Deployment, Service and status; probes run until every one is
  Deployed.

For each phase the API server's own histogram, `apiserver_admission_webhook_admission_duration_seconds`
(validating, this webhook; every call in the window, the load's creates included), gives the mean
webhook time for allowed and for rejected calls; the operator's `vramgate_admission_duration_seconds`
gives the decision's own mean (the rest of the webhook time is transport, TLS, JSON and waiting for a
CPU); the probes' round trips (client to API server and back, webhook included) give p50 and p99.
The machine is shared and noisy: compare the phases of one run, not absolute figures across runs.

    KUBEBUILDER_ASSETS=... python benchmarks/admission_latency.py [--probes 200] [--load 200]

`admission_latency()` and `webhook_time()` are what other benchmarks reuse (the scale benchmark
measures admission while 1,000 resources converge with them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the local control plane and operator harness

from kubernetes import client, config  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from prober import Prober, Target  # noqa: E402
from support.apimetrics import scrape  # noqa: E402
from support.controlplane import LocalControlPlane  # noqa: E402
from support.kubectl import kubectl  # noqa: E402
from support.operator import OperatorPod  # noqa: E402
from support.wait import wait_for  # noqa: E402
from vramgate.handlers.admission import WEBHOOK_NAME  # noqa: E402
from vramgate.spec import GROUP, PLURAL, VERSION  # noqa: E402

FITS = ROOT / "examples" / "falcon-7b-a10g.yaml"
REFUSED = ROOT / "examples" / "llama-3.1-70b-too-big.yaml"
CRD = ROOT / "crds" / "llmdeployments.vramgate.dev.yaml"


@dataclass(frozen=True)
class WebhookTime:
    """Cumulative webhook seconds and calls, by whether the call rejected, as the API server counts."""

    allowed_seconds: float
    allowed_calls: float
    rejected_seconds: float
    rejected_calls: float

    def since(self, before: WebhookTime) -> WebhookTime:
        return WebhookTime(
            self.allowed_seconds - before.allowed_seconds,
            self.allowed_calls - before.allowed_calls,
            self.rejected_seconds - before.rejected_seconds,
            self.rejected_calls - before.rejected_calls,
        )


def webhook_time(kubeconfig: Path, webhook: str = WEBHOOK_NAME) -> WebhookTime:
    """The API server's apiserver_admission_webhook_admission_duration_seconds for `webhook`, now."""
    totals = {"false": [0.0, 0.0], "true": [0.0, 0.0]}
    for family in text_string_to_metric_families(scrape(kubeconfig)):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("name") != webhook or labels.get("type") != "validating":
                continue
            slot = totals[labels.get("rejected", "false")]
            if sample.name == "apiserver_admission_webhook_admission_duration_seconds_sum":
                slot[0] += float(sample.value)
            elif sample.name == "apiserver_admission_webhook_admission_duration_seconds_count":
                slot[1] += float(sample.value)
    return WebhookTime(totals["false"][0], totals["false"][1], totals["true"][0], totals["true"][1])


@dataclass(frozen=True)
class AdmissionLatency:
    """One phase: the API server's mean webhook time (ms) and the probes' round trips (ms)."""

    webhook_mean_ms_allowed: float
    webhook_mean_ms_rejected: float
    webhook_calls: int
    decision_mean_ms_allowed: float | None  # the operator's own measure, when its metrics were given
    decision_mean_ms_rejected: float | None
    probe_p50_ms: float
    probe_p99_ms: float
    probes: int


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def admission_latency(
    kubeconfig: Path,
    namespace: str,
    *,
    probes: int | None = None,
    until: Callable[[], bool] | None = None,
    operator_metrics: str | None = None,
) -> AdmissionLatency:
    """Probe admission with dry-run creates (a fitting and a refused resource, alternately, from a
    process of their own: `prober.py`) until `probes` were sent or `until()` holds; what the API
    server, the probes and (given the URL of its /metrics) the operator measured meanwhile."""
    targets = [
        Target("fits", _resource(FITS, namespace, "probe-fits")),
        Target("refused", _resource(REFUSED, namespace, "probe-refused"), refused=True),
    ]
    before = webhook_time(kubeconfig)
    decisions_before = _decision_time(operator_metrics) if operator_metrics else None
    with Prober(kubeconfig, targets, count=probes) as prober:
        while until is not None and not until():
            time.sleep(0.5)
    spent = webhook_time(kubeconfig).since(before)
    decided = (
        _decision_time(operator_metrics).since(decisions_before)
        if operator_metrics and decisions_before
        else None
    )
    failures = sum(prober.failures.values())
    if failures:
        raise RuntimeError(f"{failures} probes were not answered as expected: {prober.failures}")
    round_trips = [latency * 1000 for found in prober.latencies.values() for latency in found]
    return AdmissionLatency(
        webhook_mean_ms_allowed=1000 * spent.allowed_seconds / max(spent.allowed_calls, 1),
        webhook_mean_ms_rejected=1000 * spent.rejected_seconds / max(spent.rejected_calls, 1),
        webhook_calls=int(spent.allowed_calls + spent.rejected_calls),
        decision_mean_ms_allowed=None
        if decided is None
        else 1000 * decided.allowed_seconds / max(decided.allowed_calls, 1),
        decision_mean_ms_rejected=None
        if decided is None
        else 1000 * decided.rejected_seconds / max(decided.rejected_calls, 1),
        probe_p50_ms=_percentile(round_trips, 0.5),
        probe_p99_ms=_percentile(round_trips, 0.99),
        probes=len(round_trips),
    )


def _decision_time(url: str) -> WebhookTime:
    """The operator's vramgate_admission_duration_seconds, now: fits as allowed, any other outcome
    as rejected."""
    totals = {"allowed": [0.0, 0.0], "rejected": [0.0, 0.0]}
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            slot = totals["allowed" if sample.labels.get("outcome") == "fits" else "rejected"]
            if sample.name == "vramgate_admission_duration_seconds_sum":
                slot[0] += float(sample.value)
            elif sample.name == "vramgate_admission_duration_seconds_count":
                slot[1] += float(sample.value)
    return WebhookTime(*totals["allowed"], *totals["rejected"])


def _resource(path: Path, namespace: str, name: str) -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load(path.read_text())
    resource["metadata"] = {"name": name, "namespace": namespace}
    return resource


def _deployed(api: client.ApiClient, namespace: str, count: int) -> bool:
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    items: list[dict[str, Any]] = found["items"]  # type: ignore[index]
    phases = [(item.get("status") or {}).get("phase") for item in items]
    return phases.count("Deployed") >= count


def run(probes: int, load: int) -> dict[str, Any]:
    with LocalControlPlane() as plane, tempfile.TemporaryDirectory() as scratch:
        kubeconfig = plane.kubeconfig
        kubectl("apply", "--server-side", "-f", str(CRD), kubeconfig=kubeconfig)
        established = ("wait", "--for=condition=Established", "crd/llmdeployments.vramgate.dev")
        wait_for(lambda: kubectl(*established, kubeconfig=kubeconfig, check=False).returncode == 0)
        kubectl("create", "namespace", "bench", kubeconfig=kubeconfig)
        operator = OperatorPod(kubeconfig, Path(scratch))  # as the chart runs it
        operator.start()
        api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        try:
            admission_latency(kubeconfig, "bench", probes=20)  # warm-up, not reported
            metrics = operator.metrics_url
            idle = admission_latency(kubeconfig, "bench", probes=probes, operator_metrics=metrics)

            def create_load() -> None:
                objects = client.CustomObjectsApi(api)
                for index in range(load):
                    objects.create_namespaced_custom_object(
                        GROUP, VERSION, "bench", PLURAL, _resource(FITS, "bench", f"load-{index:04d}")
                    )

            started = time.monotonic()
            creator = threading.Thread(target=create_load, name="load")
            creator.start()

            def converged() -> bool:
                return not creator.is_alive() and _deployed(api, "bench", load)

            converging = admission_latency(kubeconfig, "bench", until=converged, operator_metrics=metrics)
            creator.join()
            convergence_seconds = time.monotonic() - started
        finally:
            operator.stop()
            api.close()
    return {
        "idle": asdict(idle),
        "converging": asdict(converging),
        "load": load,
        "convergence_seconds": round(convergence_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=200, help="probes in the idle phase")
    parser.add_argument("--load", type=int, default=200, help="resources created in the converging phase")
    args = parser.parse_args()
    result = run(args.probes, args.load)
    print(json.dumps(result, indent=2))
    for phase in ("idle", "converging"):
        row = result[phase]
        print(
            f"{phase:>10}: webhook mean {row['webhook_mean_ms_allowed']:.1f} ms allowed, "
            f"{row['webhook_mean_ms_rejected']:.1f} ms rejected ({row['webhook_calls']} calls), of which "
            f"deciding {row['decision_mean_ms_allowed']:.2f} / {row['decision_mean_ms_rejected']:.2f} ms; "
            f"probe round trip p50 {row['probe_p50_ms']:.1f} ms, p99 {row['probe_p99_ms']:.1f} ms "
            f"({row['probes']} probes)"
        )


if __name__ == "__main__":
    main()
