"""The README's main job: vramgate on a cluster, from an empty control plane to a running server.

Without $KUBECONFIG, where containerd can run (root, `make node-deps`), it starts the local control
plane with one real kubelet node (tests/support/node.py), builds the operator's image from the
Dockerfile, installs it with the chart, and shows what a user sees: the operator pods Running, the
refusal of a model that cannot fit, the fitting example's server pod Running (a stand-in server, as
there is no GPU), the LLMDeployment READY, and the KV-cache capacity planned against what the
engine reports.

Elsewhere it says why in one line and runs the operator out of cluster against the control plane
with fake GPU nodes (or against $KUBECONFIG's cluster): the CRD, `kubectl get llmd`, the generated
engine arguments, where the pod was scheduled, and the refusal. Everything it started is stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
# The local control plane and fake GPU nodes are test helpers (tests/support/), not part of the package.
sys.path.insert(0, str(REPO / "tests"))

from support.controlplane import (  # noqa: E402 - needs the sys.path entry above
    ControlPlaneError,
    LocalControlPlane,
    find_assets_dir,
    free_loopback_ports,
)
from support.gpunodes import register_gpu_node  # noqa: E402
from support.incluster import (  # noqa: E402
    CHART,
    RELEASE,
    SYSTEM_NAMESPACE,
    as_json,
    helm_values,
    images,
    server_resource,
)
from support.node import RealNode, unavailable_reason  # noqa: E402

NAMESPACE = "vramgate-demo"
FITS = REPO / "examples" / "falcon-7b-a10g.yaml"
REFUSED = REPO / "examples" / "llama-3.1-70b-too-big.yaml"
FAKE_GPU_NODES = (("gpu-a10g-0", "NVIDIA-A10G", 23028), ("gpu-l4-0", "NVIDIA-L4", 23034))


def _kubectl_binary() -> str:
    try:
        return str(find_assets_dir(required=("kubectl",)) / "kubectl")
    except ControlPlaneError:
        found = shutil.which("kubectl")
        if found is None:
            raise
        return found


def _banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def _kubectl(
    kubeconfig: Path, *args: str, show: bool = True, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    if show:
        print(f"$ kubectl {' '.join(args)}", flush=True)
    result = subprocess.run(
        [_kubectl_binary(), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        input=input,
    )
    if show:
        print((result.stdout + result.stderr).rstrip(), flush=True)
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _wait(what: str, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


@contextlib.contextmanager
def _cluster() -> Iterator[tuple[Path, bool]]:
    """The kubeconfig to use, and whether it is the local control plane (fake GPU nodes allowed)."""
    external = os.environ.get("KUBECONFIG")
    if external:
        print(f"Using the cluster of KUBECONFIG={external}")
        yield Path(external), False
        return
    with LocalControlPlane() as plane:
        print(
            f"Local control plane ready in {plane.startup_seconds:.1f}s "
            "(etcd, kube-apiserver, controller-manager, scheduler)"
        )
        yield plane.kubeconfig, True


@contextlib.contextmanager
def _operator(kubeconfig: Path) -> Iterator[None]:
    """The operator as its own process, serving the webhook on loopback and registering it."""
    webhook_port, metrics_port, liveness_port = free_loopback_ports(3)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "VRAMGATE_WEBHOOK_MODE": "local",
        "VRAMGATE_WEBHOOK_PORT": str(webhook_port),
        "VRAMGATE_METRICS_PORT": str(metrics_port),
        "VRAMGATE_LIVENESS_PORT": str(liveness_port),
    }
    log_path = REPO / ".cache" / "demo-operator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vramgate.operator"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    print(f"Operator started (pid {process.pid}, log {log_path.relative_to(REPO)})")
    try:
        _wait(
            "the operator's admission webhook",
            lambda: (
                process.poll() is None
                and _kubectl(
                    kubeconfig,
                    "get",
                    "validatingwebhookconfiguration",
                    "vramgate.dev",
                    show=False,
                    check=False,
                ).returncode
                == 0
            ),
        )
        if process.poll() is not None:
            raise SystemExit(f"the operator exited early; see {log_path}")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        # A managed webhook left behind would refuse every LLMDeployment until the operator returns.
        _kubectl(
            kubeconfig,
            "delete",
            "validatingwebhookconfiguration",
            "vramgate.dev",
            "--ignore-not-found",
            show=False,
            check=False,
        )
        print("Operator stopped")


def _phase(kubeconfig: Path, name: str) -> str:
    result = _kubectl(
        kubeconfig,
        "-n",
        NAMESPACE,
        "get",
        "llmd",
        name,
        "-o",
        "jsonpath={.status.phase}",
        show=False,
        check=False,
    )
    return result.stdout.strip()


def _helm(kubeconfig: Path, *args: str, shown: tuple[str, ...]) -> None:
    """Run helm; print the command with only ``shown`` of its arguments (the image overrides are noise)."""
    print(f"$ helm {' '.join(shown)}", flush=True)
    result = subprocess.run(
        [str(find_assets_dir(required=("helm",)) / "helm"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    print((result.stdout + result.stderr).rstrip().split("\nNOTES:")[0], flush=True)
    if result.returncode != 0:
        raise SystemExit(f"helm {args[0]} failed")


def _jsonpath(kubeconfig: Path, *args: str) -> str:
    return _kubectl(kubeconfig, *args, show=False, check=False).stdout.strip()


def real_node_demo() -> None:
    _banner("Build the images (cached by content: an unchanged tree builds nothing)")
    started = time.monotonic()
    built = images()
    for image in built.all():
        print(f"  {image.reference}  ({image.archive.stat().st_size / 2**20:.0f} MiB)")
    print(f"ready in {time.monotonic() - started:.0f}s", flush=True)
    with LocalControlPlane(aggregator_routing=True) as plane:
        kubeconfig = plane.kubeconfig
        with RealNode(plane, (built.operator, built.standin), built.pause) as node:
            print(
                f"Control plane and node {node.name} ready (kubelet, containerd, pods on {node.subnet}, "
                f"one {node.gpu_product} advertised)"
            )
            _banner("Install vramgate with its chart (its own image, its webhook behind a Service)")
            chart = f"charts/{CHART.name}"
            _helm(
                kubeconfig,
                *("install", RELEASE, str(CHART), f"--namespace={SYSTEM_NAMESPACE}", "--create-namespace"),
                *("--wait", "--timeout=5m", *helm_values(built)),
                shown=("install", RELEASE, chart, "-n", SYSTEM_NAMESPACE, "--create-namespace", "--wait"),
            )
            _kubectl(kubeconfig, "-n", SYSTEM_NAMESPACE, "get", "pods")
            _kubectl(kubeconfig, "create", "namespace", NAMESPACE)
            _wait(
                "the namespace's ServiceAccount",
                lambda: bool(_jsonpath(kubeconfig, "-n", NAMESPACE, "get", "serviceaccount", "default")),
            )
            _banner("A deployment that cannot fit: Llama-3.1-70B, 32 x 8192 tokens on one L4")
            refused = _kubectl(
                kubeconfig, "-n", NAMESPACE, "apply", "-f", str(REFUSED.relative_to(REPO)), check=False
            )
            if refused.returncode == 0:
                raise SystemExit("the oversized deployment was not refused")
            _banner("A deployment that fits: Falcon-7B, 100 x 1000 tokens on an A10G")
            print(f"(runtime.image is the stand-in server {built.standin.reference}: no GPU here)")
            resource = server_resource(FITS, built)
            print(f"$ kubectl -n {NAMESPACE} apply -f {FITS.relative_to(REPO)}", flush=True)
            _kubectl(kubeconfig, "-n", NAMESPACE, "apply", "-f", "-", show=False, input=as_json(resource))
            ready = '{.status.conditions[?(@.type=="Ready")].status}'
            _wait(
                "the server to become Ready",
                lambda: (
                    _jsonpath(
                        kubeconfig, "-n", NAMESPACE, "get", "llmd", "falcon-7b", "-o", f"jsonpath={ready}"
                    )
                    == "True"
                ),
                timeout=180,
            )
            _kubectl(kubeconfig, "-n", NAMESPACE, "get", "pods", "-o", "wide")
            _kubectl(kubeconfig, "-n", NAMESPACE, "get", "llmd")
            _banner("Planned against observed: the KV cache the engine reports")
            _wait(
                "the capacity reading",
                lambda: bool(
                    _jsonpath(
                        kubeconfig,
                        "-n",
                        NAMESPACE,
                        "get",
                        "llmd",
                        "falcon-7b",
                        "-o",
                        "jsonpath={.status.capacity}",
                    )
                ),
            )
            _kubectl(
                kubeconfig,
                *("-n", NAMESPACE, "get", "events", "--field-selector=reason=CapacityObserved"),
                "-o=custom-columns=REASON:.reason,MESSAGE:.message",
            )
            _helm(
                kubeconfig,
                "uninstall",
                RELEASE,
                f"--namespace={SYSTEM_NAMESPACE}",
                "--wait",
                shown=("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE),
            )
    print("\nDemo finished; everything it started (node, containers, bridge, control plane) has stopped.")


def main() -> int:
    if not os.environ.get("KUBECONFIG"):
        reason = unavailable_reason()
        if reason is None:
            real_node_demo()
            return 0
        print(f"No real node: {reason}; the operator runs out of cluster, with fake GPU nodes.")
    with _cluster() as (kubeconfig, local):
        if local:
            config.load_kube_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
            with client.ApiClient() as api:
                for name, product, memory_mib in FAKE_GPU_NODES:
                    register_gpu_node(api, name, product=product, memory_mib=memory_mib)
            print(f"Fake GPU nodes: {', '.join(f'{n} ({p})' for n, p, _ in FAKE_GPU_NODES)}")
        _banner("Install the LLMDeployment CRD")
        _kubectl(kubeconfig, "apply", "-f", str(REPO / "crds"))
        _kubectl(
            kubeconfig,
            "wait",
            "--for=condition=Established",
            "crd/llmdeployments.vramgate.dev",
            "--timeout=60s",
        )
        _kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
        with _operator(kubeconfig):
            _banner("A deployment that fits: Falcon-7B, 100 x 1000 tokens on an A10G")
            _kubectl(kubeconfig, "-n", NAMESPACE, "apply", "-f", str(FITS.relative_to(REPO)))
            _wait("the Falcon-7B plan", lambda: _phase(kubeconfig, "falcon-7b") in ("Deployed", "Planned"))
            _kubectl(kubeconfig, "-n", NAMESPACE, "get", "llmd")
            _kubectl(
                kubeconfig,
                "-n",
                NAMESPACE,
                "get",
                "deployment",
                "falcon-7b",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].args}{'\\n'}",
            )
            if local:
                _wait(
                    "the scheduler to place the pod",
                    lambda: bool(
                        _kubectl(
                            kubeconfig,
                            "-n",
                            NAMESPACE,
                            "get",
                            "pods",
                            "-o",
                            "jsonpath={.items[*].spec.nodeName}",
                            show=False,
                            check=False,
                        ).stdout.strip()
                    ),
                )
                _kubectl(kubeconfig, "-n", NAMESPACE, "get", "pods", "-o", "wide")
            _banner("A deployment that cannot fit: Llama-3.1-70B, 32 x 8192 tokens on one L4")
            refused = _kubectl(
                kubeconfig, "-n", NAMESPACE, "apply", "-f", str(REFUSED.relative_to(REPO)), check=False
            )
            if refused.returncode == 0:
                raise SystemExit("the oversized deployment was not refused")
            _kubectl(kubeconfig, "-n", NAMESPACE, "delete", "llmd", "--all", "--wait=true")
        if not local:
            _kubectl(kubeconfig, "delete", "namespace", NAMESPACE, "--wait=false")
    print("\nDemo finished; everything it started has stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
