"""Settings from the environment, and the webhook server each mode builds."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import kopf
import pytest

from vramgate.handlers.webhook import ServiceWebhookServer, self_signed_certificate, webhook_server
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
        }
    )
    assert config.namespaces == ("team-a", "team-b")
    assert config.namespace_selector == "vramgate.dev/shard=a"
    assert config.webhook_mode is WebhookMode.SERVICE and config.metrics_port == 0


@pytest.mark.parametrize(
    ("variable", "value"), [("VRAMGATE_WEBHOOK_MODE", "tunnel"), ("VRAMGATE_WEBHOOK_PORT", "99999")]
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        OperatorConfig.from_environ({variable: value})


def test_the_self_signed_certificate_loads_as_a_server_certificate(tmp_path: Path) -> None:
    certfile, keyfile = self_signed_certificate("127.0.0.1", tmp_path)
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    assert keyfile.stat().st_mode & 0o077 == 0


def test_each_mode_builds_its_server() -> None:
    assert webhook_server(OperatorConfig(webhook_mode=WebhookMode.NONE)) is None
    local = webhook_server(OperatorConfig(webhook_mode=WebhookMode.LOCAL, webhook_port=9555))
    assert local is not None and (local.addr, local.port) == ("127.0.0.1", 9555)
    service = webhook_server(OperatorConfig(webhook_mode=WebhookMode.SERVICE))
    assert isinstance(service, ServiceWebhookServer) and service.addr == "0.0.0.0"
    assert (service.service_name, service.service_port) == ("vramgate-webhook", 443)


def test_service_mode_advertises_the_service_instead_of_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    async def url_config(
        self: kopf.WebhookServer, fn: kopf.WebhookFn
    ) -> AsyncIterator[kopf.WebhookClientConfig]:
        yield kopf.WebhookClientConfig(url="https://10.1.2.3:9443", caBundle="Q0E=")

    monkeypatch.setattr(kopf.WebhookServer, "__call__", url_config)
    server = ServiceWebhookServer(
        service_name="hook", service_namespace="system", service_port=443, port=9443
    )

    async def first() -> kopf.WebhookClientConfig:
        return await anext(aiter(server(lambda *args, **kwargs: None)))  # type: ignore[arg-type]

    assert asyncio.run(first()) == {
        "service": {"name": "hook", "namespace": "system", "port": 443},
        "caBundle": "Q0E=",
    }
