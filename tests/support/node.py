"""A real kubelet node beside the local control plane: containerd, runc and CNI from Debian's packages.

Everything is private to one instance, so that two test sessions can run on one machine at once:
containerd's root, state, socket and runc root, the CNI configuration, kubelet's folders and ports
(all under one temporary folder), a bridge of its own (``vg`` + 8 hex digits) on a free /24.

How pods reach the API server, without kube-proxy: the API server listens on loopback only; the pods'
``KUBERNETES_SERVICE_HOST`` is the ``kubernetes`` Service's address (10.0.0.1:443), so one NAT rule,
matched on this node's subnet, sends that address to the API server's loopback port, with
``route_localnet`` set on this bridge alone. That is the one rule kube-proxy would write for that
Service; kube-proxy itself is not used because two of them on one host rewrite each other's chains.
The API server reaches Service-backed webhooks at their pod addresses (``--enable-aggregator-routing``),
and the operator reads engine metrics from pod addresses, so no other Service address is needed.

The node registers with the ``node.kubernetes.io/not-ready`` taint, which the node-lifecycle controller
lifts; the control plane runs without that controller (fake GPU nodes have no kubelet to renew their
leases), so ``start`` lifts it once the kubelet reports Ready. GPUs are an extended resource set with a
status patch, as the device plugin would, so pods that request them are admitted and run.

Teardown (also on failure and interrupt) deletes the pods through the kubelet (so CNI releases their
addresses), stops kubelet and containerd, kills any shim left, unmounts what is under the folder, and
removes the bridge, the NAT rule and the folder; ``leftovers()`` lists anything that survived.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from kubernetes import client, config

from support.controlplane import (
    LocalControlPlane,
    _die_with_parent,
    _terminate,
    free_loopback_ports,
)
from support.images import Image

CNI_BIN_DIR = Path("/usr/lib/cni")
SERVICE_HOST = "10.0.0.1"  # the `kubernetes` Service: first address of the control plane's range
POD_NETWORKS = ipaddress.IPv4Network("10.128.0.0/10")  # where a free /24 is looked for
LOCK_FILE = Path("/run/lock/vramgate-test-node.lock")
REQUIRED_COMMANDS = ("containerd", "ctr", "runc", "ip", "iptables", "buildah", "debootstrap")
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
GPU_RESOURCE = "nvidia.com/gpu"
SHIM_SOCKETS = Path("/run/containerd/s")  # fixed in containerd 1.6/1.7, whatever its configuration


class NodeUnavailableError(RuntimeError):
    """This machine cannot run the real node; the message is one line saying why."""


def unavailable_reason() -> str | None:
    """Why the real node cannot start here, in one line, or None when it can."""
    if os.geteuid() != 0:
        return "the real node needs root (containerd, network namespaces, a bridge)"
    missing = [name for name in REQUIRED_COMMANDS if shutil.which(name) is None]
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.append("CNI plugins (/usr/lib/cni)")
    if missing:
        return f"the real node needs {', '.join(missing)}: run `make node-deps` as root on Debian/Ubuntu"
    if not Path("/proc/filesystems").read_text().count("overlay"):
        return "the real node needs overlayfs in the kernel"
    return None


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeUnavailableError(f"{' '.join(command)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def _taken_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks already on this host: interface addresses and routes."""
    taken = []
    for entry in json.loads(_run("ip", "-j", "-4", "addr").stdout):
        for address in entry.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{address['local']}/{address['prefixlen']}", strict=False))
    for route in json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all").stdout):
        destination = route.get("dst", "default")
        if destination != "default" and "/" in destination:
            taken.append(ipaddress.ip_network(destination, strict=False))
    return taken


class RealNode:
    """One kubelet node (name ``name``) with containerd, registered in ``cluster``, running ``images``.

    ``cluster`` must run with ``aggregator_routing=True`` (webhook Services resolve to pod addresses).
    """

    def __init__(
        self,
        cluster: LocalControlPlane,
        images: tuple[Image, ...],
        pause: Image,
        *,
        gpu_product: str = "NVIDIA-A10G",
        gpu_memory_mib: int = 23028,
        gpu_count: int = 1,
        startup_timeout: float = 120.0,
    ) -> None:
        self.cluster = cluster
        self.images = images
        self.pause = pause
        self.gpu_product = gpu_product
        self.gpu_memory_mib = gpu_memory_mib
        self.gpu_count = gpu_count
        self.startup_timeout = startup_timeout
        suffix = secrets.token_hex(4)
        self.name = f"vramgate-node-{suffix}"
        self.bridge = f"vg{suffix}"
        self.rule_comment = f"vramgate test node {suffix}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.folder: Path | None = None
        self._processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._nat_rule: list[str] = []
        self._shim_sockets: list[Path] = []
        self._container_pids: set[int] = set()
        self.startup_seconds = 0.0

    # -- public ---------------------------------------------------------------------------------

    @property
    def gateway(self) -> str:
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    @property
    def socket(self) -> Path:
        assert self.folder is not None
        return self.folder / "containerd.sock"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if (reason := unavailable_reason()) is not None:
            raise NodeUnavailableError(reason)
        started = time.monotonic()
        # Short: unix socket paths are limited to 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="vgnode-", dir="/tmp"))
        self._create_network()
        self._start_containerd()
        for image in (self.pause, *self.images):
            self.ctr("images", "import", "--no-unpack=false", str(image.archive))
        self._start_kubelet()
        self._wait_ready()
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Idempotent; removes everything ``start`` made, whatever point it reached."""
        if self.folder is None:
            return
        with contextlib.suppress(Exception):
            if any(name == "kubelet" for name, _, _ in self._processes):
                self._drain()
        for _, process, _ in reversed(self._processes):
            _terminate(process)
        self._processes.clear()
        self._kill_shims()
        self._unmount_all()
        # The shims' socket folder is fixed; remove it when no one else uses it.
        for folder in (SHIM_SOCKETS, SHIM_SOCKETS.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._remove_network()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def leftovers(self) -> list[str]:
        """What of this node still exists on the host (empty after a clean ``stop``)."""
        found = []
        if Path(f"/sys/class/net/{self.bridge}").exists():
            found.append(f"bridge {self.bridge}")
        nat = _run("iptables", "-t", "nat", "-S", "PREROUTING", check=False).stdout
        if self.rule_comment in nat:
            found.append(f"NAT rule '{self.rule_comment}'")
        for pid, cmdline in _processes():
            if self.name in cmdline or (self._folder_marker and self._folder_marker in cmdline):
                found.append(f"process {pid}: {cmdline[:120]}")
        mounts = Path("/proc/self/mountinfo").read_text()
        if self._folder_marker and self._folder_marker in mounts:
            found.append(f"mounts under {self._folder_marker}")
        found += [f"shim socket {socket}" for socket in self._shim_sockets if socket.exists()]
        found += [f"container process {pid}" for pid in sorted(self._container_pids) if _alive(pid)]
        if self._folder_marker and Path(self._folder_marker).exists():
            found.append(f"folder {self._folder_marker}")
        return found

    def container_processes(self) -> set[int]:
        """The processes running in this node's containers: everything below its containerd shims."""
        shims = [
            pid
            for pid, cmdline in _processes()
            if "containerd-shim" in cmdline and str(self.socket) in cmdline
        ]
        return _descendants(shims)

    def ctr(self, *args: str) -> str:
        return _run("ctr", f"--address={self.socket}", "--namespace=k8s.io", *args).stdout

    def logs(self, lines: int = 60) -> str:
        sections = []
        for name, _, log in self._processes:
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            sections.append(f"----- {name} ({log}) -----\n" + "\n".join(tail))
        return "\n".join(sections)

    # -- network ----------------------------------------------------------------------------------

    _folder_marker: str = ""

    def _create_network(self) -> None:
        """Claim a free /24 and make the bridge with its gateway address (under a host-wide lock, so
        two sessions never pick the same subnet), and the NAT rule for the API server's Service."""
        assert self.folder is not None
        self._folder_marker = str(self.folder)
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        with LOCK_FILE.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            taken = _taken_networks()
            candidates: list[ipaddress.IPv4Network] = list(POD_NETWORKS.subnets(new_prefix=24))
            random.shuffle(candidates)
            self.subnet = next(net for net in candidates if not any(net.overlaps(t) for t in taken))
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
        Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("1")
        self._nat_rule = [
            "PREROUTING",
            *("--source", str(self.subnet), "--destination", f"{SERVICE_HOST}/32"),
            *("--protocol", "tcp", "--dport", "443"),
            *("--match", "comment", "--comment", self.rule_comment),
            *("--jump", "DNAT", "--to-destination", self.cluster.server.removeprefix("https://")),
        ]
        _run("iptables", "-w", "-t", "nat", "-A", *self._nat_rule)
        cni = self.folder / "cni"
        cni.mkdir()
        (cni / "10-vramgate.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": self.bridge,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.bridge,
                            # The bridge already holds the gateway address; the plugin must not turn on
                            # IP forwarding for the host (isGateway would): pods talk to the host only.
                            "isGateway": False,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]],
                                "routes": [{"dst": "0.0.0.0/0", "gw": self.gateway}],
                                "dataDir": str(self.folder / "cni-ipam"),
                            },
                        },
                    ],
                }
            )
        )

    def _remove_network(self) -> None:
        if self._nat_rule:
            _run("iptables", "-w", "-t", "nat", "-D", *self._nat_rule, check=False)
            self._nat_rule = []
        if Path(f"/sys/class/net/{self.bridge}").exists():
            _run("ip", "link", "del", self.bridge, check=False)

    # -- containerd -------------------------------------------------------------------------------

    def _start_containerd(self) -> None:
        assert self.folder is not None
        folder = self.folder
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (folder / "containerd.toml").write_text(
            f"""version = 2
root = "{folder}/containerd/root"
state = "{folder}/containerd/state"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/containerd/opt"
[{cri}]
  sandbox_image = "{self.pause.reference}"
  # Without it runc cannot lower the sandbox's oom_score_adj below the test process's own and every
  # sandbox fails ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  Root = "{folder}/runc"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{folder}/cni"
"""
        )
        self._launch("containerd", "containerd", f"--config={folder / 'containerd.toml'}")
        self._wait(
            "containerd",
            lambda: _run("ctr", f"--address={self.socket}", "version", check=False).returncode == 0,
        )

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design (containers survive a containerd restart). Killed,
        they leave their sockets in the host-wide /run/containerd/s, named by a hash of containerd's
        address, the namespace and the shim's id (containerd's shim.SocketAddress): removed too.
        The containers' processes go first: a killed shim hands them to init, where they would run on
        (a stop after a failed drain left operator processes behind that way)."""
        assert self.folder is not None
        self._container_pids |= self.container_processes()
        for pid in self._container_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid, cmdline in _processes():
            if str(self.socket) in cmdline or str(self.folder) in cmdline:
                words = cmdline.split()
                if "-namespace" in words and "-id" in words:
                    namespace, shim = words[words.index("-namespace") + 1], words[words.index("-id") + 1]
                    digest = hashlib.sha256(f"{self.socket}/{namespace}/{shim}".encode()).hexdigest()
                    self._shim_sockets.append(SHIM_SOCKETS / digest)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(str(self.folder) in cmdline for _, cmdline in _processes()):
            time.sleep(0.2)
        for socket in self._shim_sockets:
            socket.unlink(missing_ok=True)

    def _unmount_all(self) -> None:
        """Container root filesystems, network namespaces, kubelet volumes: deepest first."""
        assert self.folder is not None
        prefix = str(self.folder) + "/"
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)
        ]
        for mount in sorted(set(mounts), key=len, reverse=True):
            _run("umount", "--lazy", mount, check=False)

    # -- kubelet ----------------------------------------------------------------------------------

    def _start_kubelet(self) -> None:
        assert self.folder is not None and self.subnet is not None
        port, healthz = free_loopback_ports(2)
        root = self.folder / "kubelet"
        root.mkdir()
        kubelet_config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.gateway,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failCgroupV1": False,
            "failSwapOn": False,
            "podLogsDir": str(self.folder / "pod-logs"),
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            # The host's disk and images belong to everyone on it: never evict, never collect images.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Its KUBE-FIREWALL and canary chains are host-wide, fixed names: shared by every node here.
            "makeIPTablesUtilChains": False,
            "syncFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
        }
        (self.folder / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config))
        labels = {
            "nvidia.com/gpu.product": self.gpu_product,
            "nvidia.com/gpu.count": str(self.gpu_count),
            "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
            "nvidia.com/gpu.present": "true",
        }
        self._launch(
            "kubelet",
            str(self.cluster.binary("kubelet")),
            f"--config={self.folder / 'kubelet.yaml'}",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.gateway}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
        )

    def _api(self) -> client.CoreV1Api:
        api = config.new_client_from_config(str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        return client.CoreV1Api(api)

    def _read_node(self, api: client.CoreV1Api) -> dict[str, Any]:
        node: dict[str, Any] = api.api_client.sanitize_for_serialization(api.read_node(self.name))
        return node

    def _wait_ready(self) -> None:
        api = self._api()

        def ready() -> bool:
            conditions = self._read_node(api).get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait("kubelet", ready, "a Ready node")
        taints = [t for t in self._read_node(api)["spec"].get("taints") or [] if t["key"] != NOT_READY_TAINT]
        api.patch_node(self.name, {"spec": {"taints": taints or None}})
        api.patch_node_status(self.name, {"status": {"capacity": {GPU_RESOURCE: str(self.gpu_count)}}})
        self._wait(
            "kubelet",
            lambda: self._read_node(api)["status"]["allocatable"].get(GPU_RESOURCE) == str(self.gpu_count),
            f"{GPU_RESOURCE} allocatable",
        )

    def _drain(self) -> None:
        """Delete every pod on the node and wait until the kubelet has removed their sandboxes (so
        CNI gives their addresses back and containerd unmounts their filesystems)."""
        api = self._api()
        listed = api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}")
        for pod in api.api_client.sanitize_for_serialization(listed).get("items", []):
            with contextlib.suppress(client.ApiException):
                api.delete_namespaced_pod(
                    pod["metadata"]["name"], pod["metadata"]["namespace"], grace_period_seconds=0
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.ctr("tasks", "list", "--quiet").strip():
            time.sleep(0.5)

    # -- processes --------------------------------------------------------------------------------

    def _launch(self, name: str, *command: str) -> None:
        assert self.folder is not None
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl(2) call
            )
        self._processes.append((name, process, log))

    def _wait(self, name: str, ready: Callable[[], bool], what: str = "") -> None:
        process = next(p for n, p, _ in self._processes if n == name)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            with contextlib.suppress(Exception):
                if ready():
                    return
            if (code := process.poll()) is not None:
                raise NodeUnavailableError(f"{name} exited with code {code}:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise NodeUnavailableError(
                    f"{name}: no {what or 'answer'} in {self.startup_timeout:.0f}s:\n{self.logs()}"
                )
            time.sleep(0.5)


def _descendants(roots: list[int]) -> set[int]:
    """Every process below `roots` in the process tree (from each /proc/PID/stat's parent field)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The command name in parentheses may hold spaces: the parent pid follows the last ')'.
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append(
                    (int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
                )
    return found
