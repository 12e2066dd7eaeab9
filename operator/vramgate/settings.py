"""Operator settings from environment variables, so one image serves a laptop and a cluster alike.

Every variable is optional; a bad value stops the operator at start-up with the variable's name and
what it accepts, rather than failing later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

ENV_PREFIX = "VRAMGATE_"
LOG_FORMATS = ("plain", "full", "json")
PLACEMENT_MODES = ("auto", "cluster", "catalog")


class WebhookMode(StrEnum):
    """Where the admission webhook is served and how the API server reaches it."""

    LOCAL = "local"  # on VRAMGATE_WEBHOOK_HOST with a self-signed certificate: development, tests
    SERVICE = "service"  # on all interfaces with mounted certificates, behind a Service: in-cluster
    NONE = "none"  # no webhook: specs are still checked by the reconciler (phase Rejected)


class SettingsError(ValueError):
    """An environment variable with a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator reads from its environment (VRAMGATE_<FIELD NAME IN CAPITALS>)."""

    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    # A label selector on namespaces: this instance's shard (several instances, disjoint selectors).
    namespace_selector: str = ""
    webhook_mode: WebhookMode = WebhookMode.LOCAL
    webhook_port: int = 9443
    webhook_host: str = "127.0.0.1"  # local mode: the address the API server dials
    webhook_cert_dir: Path = Path("/etc/vramgate/webhook")  # service mode: tls.crt, tls.key[, ca.crt]
    webhook_service: str = "vramgate-webhook"
    webhook_service_namespace: str = "vramgate-system"
    webhook_service_port: int = 443
    webhook_configuration: str = "vramgate.dev"  # managed by the operator; empty: a chart owns it
    metrics_port: int = 9090  # 0: no metrics endpoint
    liveness_port: int = 8080  # `python -m vramgate.operator` only (kopf run takes --liveness); 0: none
    log_format: str = "plain"  # `python -m vramgate.operator` only: plain, full or json
    # False: this process serves admission and nothing else, never reconciling (the chart's webhook
    # container, beside the reconciling one): no reconciliation holds up a review, not even for the GIL.
    reconcile: bool = True
    # Reconciliation runs in one replica at a time, the holder of this Lease (every replica serves
    # admission); off: this process always reconciles (one instance, or namespace shards).
    leader_election: bool = True
    lease_name: str = "vramgate"
    lease_namespace: str = "default"  # in cluster: the pod's namespace (POD_NAMESPACE)
    lease_seconds: int = 15  # a standby takes over at most this long after the leader stops renewing
    identity: str = ""  # this replica's name in the Lease; empty: host name and process id
    # Placement: auto (cluster when any GPU node exists, else catalog), cluster or catalog.
    placement_mode: str = "auto"
    placement_catalog_types: tuple[str, ...] = ()  # catalog mode's allow-list (autoscaler's node types)
    hami: bool = False  # HAMi is installed: one-GPU plans get a GPU-memory share instead of a whole GPU
    skip_memory_check_namespaces: tuple[str, ...] = ()  # where the escape hatch is honoured ("*": all)
    allowed_images: tuple[str, ...] = ()  # image repository prefixes; empty: the engines' official images
    # An engine reporting a KV cache smaller than planned by more than this fraction gets a Warning Event.
    capacity_mismatch_threshold: float = 0.1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(ENV_PREFIX + name, default).strip()

        defaults = cls()
        mode = WebhookMode(
            _choice(
                get("WEBHOOK_MODE", defaults.webhook_mode.value).lower(), "WEBHOOK_MODE", list(WebhookMode)
            )
        )
        reconcile = _choice(get("RECONCILE", "true").lower(), "RECONCILE", ("true", "false")) == "true"
        if not reconcile and mode is WebhookMode.NONE:
            raise SettingsError(
                f"{ENV_PREFIX}RECONCILE=false serves admission only, so {ENV_PREFIX}WEBHOOK_MODE must be "
                f"local or service; not none"
            )
        return cls(
            namespaces=tuple(name.strip() for name in get("NAMESPACES", "").split(",") if name.strip()),
            namespace_selector=get("NAMESPACE_SELECTOR", ""),
            webhook_mode=mode,
            webhook_port=_port(get("WEBHOOK_PORT", str(defaults.webhook_port)), "WEBHOOK_PORT"),
            webhook_host=get("WEBHOOK_HOST", defaults.webhook_host),
            webhook_cert_dir=Path(get("WEBHOOK_CERT_DIR", str(defaults.webhook_cert_dir))),
            webhook_service=get("WEBHOOK_SERVICE", defaults.webhook_service),
            webhook_service_namespace=get(
                "WEBHOOK_SERVICE_NAMESPACE", env.get("POD_NAMESPACE", defaults.webhook_service_namespace)
            ),
            webhook_service_port=_port(
                get("WEBHOOK_SERVICE_PORT", str(defaults.webhook_service_port)), "WEBHOOK_SERVICE_PORT"
            ),
            webhook_configuration=get("WEBHOOK_CONFIGURATION", defaults.webhook_configuration),
            metrics_port=_port(
                get("METRICS_PORT", str(defaults.metrics_port)), "METRICS_PORT", allow_zero=True
            ),
            liveness_port=_port(
                get("LIVENESS_PORT", str(defaults.liveness_port)), "LIVENESS_PORT", allow_zero=True
            ),
            log_format=_choice(get("LOG_FORMAT", defaults.log_format).lower(), "LOG_FORMAT", LOG_FORMATS),
            reconcile=reconcile,
            leader_election=_choice(
                get("LEADER_ELECTION", "true").lower(), "LEADER_ELECTION", ("true", "false")
            )
            == "true",
            lease_name=get("LEASE_NAME", defaults.lease_name),
            lease_namespace=get("LEASE_NAMESPACE", env.get("POD_NAMESPACE", defaults.lease_namespace)),
            lease_seconds=_bounded(
                get("LEASE_SECONDS", str(defaults.lease_seconds)), "LEASE_SECONDS", 3, 300
            ),
            identity=get("IDENTITY", env.get("POD_NAME", "")),
            placement_mode=_choice(get("PLACEMENT_MODE", "auto").lower(), "PLACEMENT_MODE", PLACEMENT_MODES),
            placement_catalog_types=_names(get("PLACEMENT_CATALOG_TYPES", "")),
            hami=_choice(get("HAMI", "false").lower(), "HAMI", ("true", "false")) == "true",
            skip_memory_check_namespaces=_names(get("SKIP_MEMORY_CHECK_NAMESPACES", "")),
            allowed_images=_image_prefixes(get("ALLOWED_IMAGES", "")),
            capacity_mismatch_threshold=_fraction(
                get("CAPACITY_MISMATCH_THRESHOLD", str(defaults.capacity_mismatch_threshold)),
                "CAPACITY_MISMATCH_THRESHOLD",
            ),
        )


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _choice(value: str, name: str, allowed: Iterable[str]) -> str:
    if value not in allowed:
        raise SettingsError(f"{ENV_PREFIX}{name} must be one of: {', '.join(allowed)}; not {value!r}")
    return value


def _fraction(value: str, name: str) -> float:
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if not 0.0 <= fraction < 1.0:
        raise SettingsError(
            f"{ENV_PREFIX}{name} must be a fraction from 0 up to (not including) 1, not {value!r}"
        )
    return fraction


def _port(value: str, name: str, *, allow_zero: bool = False) -> int:
    return _bounded(value, name, 0 if allow_zero else 1, 65535, what="a port number")


def _bounded(value: str, name: str, lowest: int, highest: int, *, what: str = "a whole number") -> int:
    if not value.isdigit() or not lowest <= int(value) <= highest:
        raise SettingsError(f"{ENV_PREFIX}{name} must be {what} ({lowest}-{highest}), not {value!r}")
    return int(value)


def _image_prefixes(value: str) -> tuple[str, ...]:
    prefixes = tuple(prefix.strip() for prefix in value.split(",") if prefix.strip())
    for prefix in prefixes:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]*", prefix):
            raise SettingsError(
                f"{ENV_PREFIX}ALLOWED_IMAGES must be image repository prefixes separated by commas "
                f"(docker.io/vllm/vllm-openai, registry.example.com/llm/); not {prefix!r}"
            )
    return prefixes
