"""The operator at fleet scale, against a "floor" on the same local control plane: `make bench-scale`.

Method (each size on a fresh control plane, so no run inherits another's objects):

* **floor**: one client loop creates each LLMDeployment and writes its Service, Deployment and status
  itself (the same `decide`, the same manifests, one server-side apply each): what any operator must
  at least cost. No webhook is registered.
* **operator, convergence**: the same client creates the same resources one by one (through the
  webhook) while the operator runs; the time runs from the first create until every resource reports
  phase Deployed for its generation.
* **restart, nothing changed**: SIGTERM, start again; how long the operator stays busy (its CPU time
  still rising) and how many writes the API server counts meanwhile.
* **restart catch-up**: with the operator stopped, every spec changes (concurrency); the operator
  starts and the time runs until every new generation is observed. The floor loop re-applies the same
  changes itself.
* **admission latency**: a server-side dry-run create of a fitting resource, every 0.25 s, timed by
  a client process of its own (`prober.py`): idle with the webhook on and off, and while the resources
  converge, when the same probe in kube-system (no webhook) at the same instants gives the API
  server's own latency at that load. The API server's own timing of the webhook comes from
  `apiserver_admission_webhook_admission_duration_seconds`.
* **writes per object**: `apiserver_request_total` by verb and resource, before and after.
* **the operator** runs as the chart runs it: a process that serves admission and never reconciles,
  and one that reconciles and serves no webhook (`OperatorPod`).
* **operator RSS and CPU**: /proc of the operator processes (resident set, its peak, user+system time
  of the reconciling one; the webhook process's resident set apart);
  API server CPU the same way.
* **sharding**: N resources in four namespaces, created while no operator runs; then one instance, or
  two with disjoint namespace selectors (one serving the webhook), catch up; time until all Deployed.

Absolute times on a shared 2-core machine are noisy; the ratios within one run are the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402

from prober import Prober, Target  # noqa: E402
from support.apimetrics import api_writes, scrape, webhook_seconds, writes_since  # noqa: E402
from support.controlplane import LocalControlPlane  # noqa: E402
from support.kubectl import kubectl  # noqa: E402
from support.operator import OperatorPod, OperatorProcess, remove_webhook_configuration  # noqa: E402
from support.wait import wait_for  # noqa: E402
from vramgate import manifests  # noqa: E402
from vramgate.crd import CRD_NAME  # noqa: E402
from vramgate.decision import decide  # noqa: E402
from vramgate.handlers import kube, status  # noqa: E402
from vramgate.spec import GROUP, PLURAL, VERSION  # noqa: E402

FALCON = yaml.safe_load((REPOSITORY / "examples" / "falcon-7b-a10g.yaml").read_text())
PROBE_INTERVAL_SECONDS = 0.25
WEBHOOK_PROBE, NO_WEBHOOK_PROBE = "webhook", "no webhook"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OPERATOR_OBJECTS = {
    ("deployments", ""),
    ("services", ""),
    ("llmdeployments", ""),
    ("llmdeployments", "status"),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """Resident set now and at its peak, MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return {"rss_mib": round(found["VmRSS"], 1), "peak_mib": round(found["VmHWM"], 1)}


def resource(namespace: str, name: str, concurrency: int = 100) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(FALCON))
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["workload"]["concurrency"] = concurrency
    return body


class Cluster:
    """A fresh local control plane with the CRD, and the clients the phases share."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.control_plane = stack.enter_context(LocalControlPlane())
        self.kubeconfig = self.control_plane.kubeconfig
        self.api = stack.enter_context(
            config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        )
        crd = REPOSITORY / "crds" / f"{CRD_NAME}.yaml"
        kubectl("apply", "--server-side", "-f", str(crd), kubeconfig=self.kubeconfig)
        # `kubectl wait` fails at once, instead of waiting, while the new CRD has no conditions yet.
        established = ("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
        wait_for(lambda: kubectl(*established, kubeconfig=self.kubeconfig, check=False).returncode == 0, 60)
        self.objects = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.folder = Path(tempfile.mkdtemp(prefix="vramgate-scale-"))

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        return name

    def apiserver_cpu(self) -> float:
        return cpu_seconds(self.control_plane.pid("kube-apiserver"))

    def writes(self) -> dict[tuple[str, str, str], float]:
        return api_writes(self.kubeconfig, OPERATOR_OBJECTS)

    def operator(self, name: str, **env: str) -> OperatorProcess:  # a process that does both
        return OperatorProcess(self.kubeconfig, self.folder / f"{name}.log", env=env)

    def operator_pod(self, namespaces: str) -> OperatorPod:
        return OperatorPod(self.kubeconfig, self.folder, env={"VRAMGATE_NAMESPACES": namespaces})

    def items(self, namespace: str) -> list[dict[str, Any]]:
        found = cast(
            dict[str, Any], self.objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        )
        return list(found["items"])

    def converged(self, namespaces: list[str], count: int) -> bool:
        done = 0
        for namespace in namespaces:
            items = self.items(namespace)
            done += sum(
                1
                for item in items
                if (item.get("status") or {}).get("phase") == "Deployed"
                and item["status"].get("observedGeneration") == item["metadata"]["generation"]
            )
        return done >= count

    def wait_converged(self, namespaces: list[str], count: int, timeout: float = 3600) -> float:
        """Seconds until `count` resources in `namespaces` are Deployed at their generation."""
        started = time.monotonic()
        while not self.converged(namespaces, count):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{count} resources not Deployed within {timeout:.0f}s")
            time.sleep(1.0)
        return time.monotonic() - started


def probes(cluster: Cluster, namespace: str) -> Prober:
    """Admission probes through the webhook (`namespace`) and, interleaved, past it (kube-system): the
    API server's own latency at the same instants. One probe of each every 0.25 s."""
    targets = [
        Target(WEBHOOK_PROBE, resource(namespace, "probe")),
        Target(NO_WEBHOOK_PROBE, resource("kube-system", "probe")),
    ]
    return Prober(cluster.kubeconfig, targets, interval=PROBE_INTERVAL_SECONDS / 2)


def probe_for(cluster: Cluster, namespace: str, seconds: float) -> dict[str, Any]:
    with probes(cluster, namespace) as prober:
        time.sleep(seconds)
    return prober.summary(WEBHOOK_PROBE)


def floor_write(cluster: Cluster, body: dict[str, Any]) -> None:
    """What the operator does for one resource, as plainly as it can be done."""
    decision = decide(body)
    if not decision.allowed or decision.spec is None or decision.plan is None:
        raise RuntimeError(decision.message)
    kube.apply(cluster.api, manifests.service(body, decision.spec))
    deployment = kube.apply(cluster.api, manifests.deployment(body, decision.spec, decision.plan))
    generation = body["metadata"]["generation"]
    new = status.deployed_status(decision, deployment, previous={}, generation=generation, now="0")
    kube.apply_llmdeployment_status(cluster.api, body["metadata"], new, field_manager=kube.FIELD_MANAGER)


def measured(cluster: Cluster, run: Callable[[], None]) -> dict[str, Any]:
    """Wall time, API server CPU and writes of `run`."""
    writes, cpu, started = cluster.writes(), cluster.apiserver_cpu(), time.monotonic()
    run()
    return {
        "seconds": round(time.monotonic() - started, 1),
        "apiserver_cpu_s": round(cluster.apiserver_cpu() - cpu, 1),
        "writes": writes_since(writes, cluster.writes()),
    }


def pod_cpu_seconds(pod: OperatorPod) -> float:
    """Both processes' CPU time since they started."""
    return cpu_seconds(pod.admission.pid) + cpu_seconds(pod.reconciler.pid)


def wait_idle(pid: int, quiet_seconds: float = 3.0, timeout: float = 1800) -> float:
    """Seconds until the process's CPU time stops rising (less than 2% of a core over `quiet_seconds`)."""
    started = time.monotonic()
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        if time.monotonic() - started > timeout:
            raise TimeoutError("the operator never went idle")
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last > 0.02 * (time.monotonic() - since):
            last, since = now, time.monotonic()
    return since - started


def size_run(count: int) -> dict[str, Any]:
    result: dict[str, Any] = {"resources": count}
    with contextlib.ExitStack() as stack:
        cluster = Cluster(stack)
        floor_ns, op_ns, probe_ns = (cluster.namespace(n) for n in ("floor", "operator", "probe"))
        result["admission_webhook_off_idle"] = probe_for(cluster, probe_ns, 10)

        def floor_create() -> None:
            for index in range(count):
                body = cast(
                    dict[str, Any],
                    cluster.objects.create_namespaced_custom_object(
                        GROUP, VERSION, floor_ns, PLURAL, resource(floor_ns, f"m{index}")
                    ),
                )
                floor_write(cluster, body)

        result["floor"] = measured(cluster, floor_create)

        # Only its own namespace (and the probes'): the floor's resources are not the operator's business.
        operator = cluster.operator_pod(f"{op_ns},{probe_ns}")
        operator.start()
        pid = operator.reconciler.pid
        wait_idle(pid)
        result["admission_webhook_on_idle"] = probe_for(cluster, probe_ns, 10)
        webhook_before = webhook_seconds(scrape(cluster.kubeconfig))
        operator_cpu = pod_cpu_seconds(operator)

        def operator_create() -> None:
            for index in range(count):
                cluster.objects.create_namespaced_custom_object(
                    GROUP, VERSION, op_ns, PLURAL, resource(op_ns, f"m{index}")
                )
            cluster.wait_converged([op_ns], count)

        with probes(cluster, probe_ns) as prober:
            result["operator"] = measured(cluster, operator_create)
        result["admission_under_load"] = prober.summary(WEBHOOK_PROBE)
        result["api_server_under_load"] = prober.summary(NO_WEBHOOK_PROBE)
        result["operator"]["busy_after_convergence_s"] = round(wait_idle(pid), 1)
        result["operator"]["cpu_s"] = round(pod_cpu_seconds(operator) - operator_cpu, 1)
        result["operator"]["memory"] = memory_mib(pid)
        result["operator"]["webhook_memory"] = memory_mib(operator.admission.pid)
        webhook_after = webhook_seconds(scrape(cluster.kubeconfig))
        calls = webhook_after[1] - webhook_before[1]
        result["webhook_mean_ms_apiserver"] = round(1000 * (webhook_after[0] - webhook_before[0]) / calls, 2)

        # A restart with nothing changed.
        operator.stop()
        writes = cluster.writes()
        operator.start()
        pid = operator.reconciler.pid
        busy = wait_idle(pid)
        result["restart_unchanged"] = {
            "busy_s": round(busy, 1),
            "writes": writes_since(writes, cluster.writes()),
            "cpu_s": round(pod_cpu_seconds(operator), 1),
            "memory": memory_mib(pid),
        }

        # Catch-up after every spec changed while the operator was down; the floor re-applies the same.
        operator.stop()
        remove_webhook_configuration(cluster.kubeconfig)
        time.sleep(2)  # the API server notices the configuration is gone
        patch = {"spec": {"workload": {"concurrency": 50}}}
        for namespace in (floor_ns, op_ns):
            for index in range(count):
                cluster.objects.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, f"m{index}", patch
                )

        def floor_catch_up() -> None:
            for body in cluster.items(floor_ns):
                floor_write(cluster, body)

        result["floor_catch_up"] = measured(cluster, floor_catch_up)

        def operator_catch_up() -> None:
            operator.start()
            cluster.wait_converged([op_ns], count)

        result["operator_catch_up"] = measured(cluster, operator_catch_up)
        result["operator_catch_up"]["memory"] = memory_mib(operator.reconciler.pid)
        result["operator_catch_up"]["webhook_memory"] = memory_mib(operator.admission.pid)
        operator.stop()
    return result


def shard_run(count: int, instances: int) -> dict[str, Any]:
    """`count` pending resources over four namespaces (two per shard); `instances` operators catch up."""
    with contextlib.ExitStack() as stack:
        cluster = Cluster(stack)
        namespaces = [cluster.namespace(f"team-{i}", {"vramgate.dev/shard": "ab"[i % 2]}) for i in range(4)]
        for index in range(count):
            namespace = namespaces[index % 4]
            cluster.objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, resource(namespace, f"m{index}")
            )
        if instances == 1:
            operators = [cluster.operator("single")]
        else:
            operators = [
                cluster.operator(
                    "shard-a", VRAMGATE_NAMESPACE_SELECTOR="vramgate.dev/shard=a", VRAMGATE_LEASE_NAME="a"
                ),
                cluster.operator(
                    "shard-b",
                    VRAMGATE_NAMESPACE_SELECTOR="vramgate.dev/shard=b",
                    VRAMGATE_LEASE_NAME="b",
                    VRAMGATE_WEBHOOK_MODE="none",
                    VRAMGATE_WEBHOOK_CONFIGURATION="",
                ),
            ]

        def catch_up() -> None:
            starting = [
                threading.Thread(target=operator.start, kwargs={"leading": operator is operators[0]})
                for operator in operators
            ]
            for thread in starting:  # together: neither instance's start-up delays the other
                thread.start()
            for thread in starting:
                thread.join()
            cluster.wait_converged(namespaces, count)

        try:
            return {"instances": instances, **measured(cluster, catch_up)}
        finally:
            for operator in operators:
                operator.stop()


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else float("nan")


def compare(label: str, operator: float, floor: float, unit: str = "s") -> str:
    return f"{label:<22} operator {operator} {unit}, floor {floor} {unit}: {ratio(operator, floor)}x"


def report(sizes: list[dict[str, Any]], shards: list[dict[str, Any]]) -> None:
    for run in sizes:
        op, floor = run["operator"], run["floor"]
        restart, catch, floor_catch = (
            run["restart_unchanged"],
            run["operator_catch_up"],
            run["floor_catch_up"],
        )
        lines = [
            f"\n== {run['resources']} resources ==",
            compare("convergence", op["seconds"], floor["seconds"]),
            compare("API server CPU", op["apiserver_cpu_s"], floor["apiserver_cpu_s"], "CPU-s"),
            compare("restart catch-up", catch["seconds"], floor_catch["seconds"]),
            compare("catch-up API CPU", catch["apiserver_cpu_s"], floor_catch["apiserver_cpu_s"], "CPU-s"),
            f"writes, convergence    operator {op['writes']}",
            f"                       floor    {floor['writes']}",
            f"writes, catch-up       operator {catch['writes']}",
            f"                       floor    {floor_catch['writes']}",
            f"busy after convergence {op['busy_after_convergence_s']} s; "
            f"operator CPU (both processes) {op['cpu_s']} s",
            f"operator memory        converged {op['memory']}; after catch-up {catch['memory']}",
            f"webhook memory         converged {op['webhook_memory']}; "
            f"after catch-up {catch['webhook_memory']}",
            f"restart, no change     busy {restart['busy_s']} s, writes {restart['writes'] or 'none'}, "
            f"memory {restart['memory']}",
            f"admission, idle        webhook off {run['admission_webhook_off_idle']}",
            f"                       webhook on  {run['admission_webhook_on_idle']}",
            f"admission, under load  {run['admission_under_load']}",
            f"  same instants, no webhook (kube-system) {run['api_server_under_load']}",
            f"webhook time (API server's measure): mean {run['webhook_mean_ms_apiserver']} ms",
        ]
        print("\n".join(lines))
    if shards:
        one, two = shards
        print(f"\n== sharding: {one['resources']} pending resources over four namespaces ==")
        print(f"one instance {one['seconds']} s, two instances {two['seconds']} s")
        print(f"throughput, two instances over one: {ratio(one['seconds'], two['seconds'])}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--shard-resources", type=int, default=200, help="0: skip the sharding runs")
    parser.add_argument("--output", type=Path, help="also write the raw figures as JSON here")
    args = parser.parse_args()
    sizes = [size_run(count) for count in args.sizes]
    shards = []
    if args.shard_resources:
        shards = [{"resources": args.shard_resources, **shard_run(args.shard_resources, n)} for n in (1, 2)]
    report(sizes, shards)
    if args.output:
        args.output.write_text(json.dumps({"sizes": sizes, "shards": shards}, indent=2))


if __name__ == "__main__":
    main()
