"""Settings from the environment, and where each webhook mode serves and what it registers."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from vramgate.handlers.inventory import placement_policy
from vramgate.handlers.webhook import (
    ServingFiles,
    client_config,
    self_signed_certificate,
    serving_files,
    webhook_configuration,
)
from vramgate.placement import PlacementMode
from vramgate.settings import OperatorConfig, SettingsError, WebhookMode


def test_defaults_watch_all_namespaces_with_a_local_webhook() -> None:
    config = OperatorConfig.from_environ({})
    assert config.namespaces == () and config.webhook_mode is WebhookMode.LOCAL
    assert config.webhook_configuration == "vramgate.dev"


def test_environment_overrides() -> None:
    config = OperatorConfig.from_environ(
        {
            "VRAMGATE_NAMESPACES": "team-a, team-b",
            "VRAMGATE_WEBHOOK_MODE": "Service",
            "VRAMGATE_METRICS_PORT": "0",
            "VRAMGATE_NAMESPACE_SELECTOR": " vramgate.dev/shard=a ",
            "VRAMGATE_CAPACITY_MISMATCH_THRESHOLD": "0.25",
        }
    )
    assert config.namespaces == ("team-a", "team-b")
    assert config.namespace_selector == "vramgate.dev/shard=a"
    assert config.webhook_mode is WebhookMode.SERVICE and config.metrics_port == 0
    assert config.capacity_mismatch_threshold == 0.25


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VRAMGATE_WEBHOOK_MODE", "tunnel"),
        ("VRAMGATE_WEBHOOK_PORT", "99999"),
        ("VRAMGATE_CAPACITY_MISMATCH_THRESHOLD", "10%"),
        ("VRAMGATE_CAPACITY_MISMATCH_THRESHOLD", "1.5"),
        ("VRAMGATE_RECONCILE", "no"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        OperatorConfig.from_environ({variable: value})


def test_leader_election_settings() -> None:
    defaults = OperatorConfig.from_environ({})
    assert defaults.leader_election and defaults.lease_namespace == "default" and defaults.lease_seconds == 15
    in_pod = OperatorConfig.from_environ(
        {"POD_NAMESPACE": "ops", "POD_NAME": "vramgate-0", "VRAMGATE_LEADER_ELECTION": "False"}
    )
    assert (in_pod.lease_namespace, in_pod.identity, in_pod.leader_election) == ("ops", "vramgate-0", False)
    with pytest.raises(SettingsError, match="VRAMGATE_LEASE_SECONDS must be a whole number \\(3-300\\)"):
        OperatorConfig.from_environ({"VRAMGATE_LEASE_SECONDS": "1"})


def test_a_bad_setting_stops_the_operator_with_one_line_and_no_traceback() -> None:
    # What Kubernetes injects for a Service named vramgate-webhook where service links are on.
    env = {**os.environ, "VRAMGATE_WEBHOOK_PORT": "tcp://10.0.72.239:443"}
    command = [sys.executable, "-m", "vramgate.operator"]
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 2
    assert started.stderr.strip().splitlines() == [
        "vramgate: VRAMGATE_WEBHOOK_PORT must be a port number (1-65535), not 'tcp://10.0.72.239:443'"
    ]


def test_an_admission_only_process_must_serve_a_webhook() -> None:
    assert OperatorConfig.from_environ({}).reconcile
    serving = {"VRAMGATE_RECONCILE": "False", "VRAMGATE_WEBHOOK_MODE": "service"}
    admission = OperatorConfig.from_environ(serving)
    assert not admission.reconcile and admission.webhook_mode is WebhookMode.SERVICE
    idle = {"VRAMGATE_RECONCILE": "false", "VRAMGATE_WEBHOOK_MODE": "none"}
    with pytest.raises(SettingsError, match="VRAMGATE_RECONCILE=false serves admission only"):
        OperatorConfig.from_environ(idle)


def test_the_self_signed_certificate_loads_as_a_server_certificate(tmp_path: Path) -> None:
    certfile, keyfile = self_signed_certificate("127.0.0.1", tmp_path)
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    assert keyfile.stat().st_mode & 0o077 == 0


def test_local_mode_makes_a_certificate_unless_the_folder_has_one(tmp_path: Path) -> None:
    scratch, mounted = tmp_path / "scratch", tmp_path / "mounted"
    scratch.mkdir()
    mounted.mkdir()
    local = OperatorConfig(webhook_mode=WebhookMode.LOCAL, webhook_cert_dir=mounted)
    made = serving_files(local, scratch)
    assert made.certificate.parent == scratch and made.ca is None
    self_signed_certificate("127.0.0.1", mounted)
    assert serving_files(local, scratch).certificate == mounted / "tls.crt"
    (mounted / "ca.crt").write_bytes(made.certificate.read_bytes())
    service = serving_files(
        OperatorConfig(webhook_mode=WebhookMode.SERVICE, webhook_cert_dir=mounted), scratch
    )
    assert service == ServingFiles(mounted / "tls.crt", mounted / "tls.key", mounted / "ca.crt")
    assert base64.b64decode(service.ca_bundle()) == made.certificate.read_bytes()


def test_each_mode_tells_the_api_server_where_to_call(tmp_path: Path) -> None:
    files = ServingFiles(*self_signed_certificate("127.0.0.1", tmp_path))
    local = client_config(OperatorConfig(webhook_port=9555), files)
    assert local["url"] == "https://127.0.0.1:9555/validate-llmdeployment"
    service = client_config(OperatorConfig(webhook_mode=WebhookMode.SERVICE), files)
    assert service["service"] == {
        "name": "vramgate-webhook",
        "namespace": "vramgate-system",
        "port": 443,
        "path": "/validate-llmdeployment",
    }
    assert local["caBundle"] == service["caBundle"] == files.ca_bundle()


def test_the_webhook_configuration_covers_only_watched_namespaces() -> None:
    everywhere = webhook_configuration(OperatorConfig(), {"url": "https://x"}, own_namespace=None)
    (hook,) = everywhere["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 10
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]
    }
    scoped = webhook_configuration(OperatorConfig(namespaces=("team-a",)), {}, own_namespace="ops")
    assert scoped["webhooks"][0]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "ops"]},
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]},
    ]


def test_placement_settings_and_their_policy() -> None:
    config = OperatorConfig.from_environ(
        {
            "VRAMGATE_PLACEMENT_MODE": "Catalog",
            "VRAMGATE_PLACEMENT_CATALOG_TYPES": "L4, A10G",
            "VRAMGATE_HAMI": "true",
            "VRAMGATE_SKIP_MEMORY_CHECK_NAMESPACES": "research,*",
        }
    )
    policy = placement_policy(config)
    assert policy.mode is PlacementMode.CATALOG and policy.catalog_types == ("L4", "A10G") and policy.hami
    assert config.skip_memory_check_namespaces == ("research", "*")
    assert placement_policy(OperatorConfig.from_environ({})).mode is None  # auto
    for variable, value in (("VRAMGATE_PLACEMENT_MODE", "anywhere"), ("VRAMGATE_HAMI", "yes")):
        with pytest.raises(SettingsError, match=variable):
            OperatorConfig.from_environ({variable: value})
