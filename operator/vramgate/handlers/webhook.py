"""The admission webhook server for each `WebhookMode`.

kopf's built-in server generates its certificate with oscrypto, which breaks on OpenSSL 3, and only
advertises `url` client configs; so local mode brings its own certificate (made with `cryptography`)
and service mode rewrites the client config to point at a Service (kopf issues 785 and 1155).
"""

from __future__ import annotations

import datetime
import ipaddress
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vramgate.settings import OperatorConfig, WebhookMode

CERTIFICATE_DAYS = 365


class ServiceWebhookServer(kopf.WebhookServer):
    """Serves like kopf's server, but tells the API server to reach it through a Service."""

    def __init__(
        self, *, service_name: str, service_namespace: str, service_port: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.service_name = service_name
        self.service_namespace = service_namespace
        self.service_port = service_port

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for url_config in super().__call__(fn):
            config = kopf.WebhookClientConfig(
                service=kopf.WebhookClientConfigService(
                    name=self.service_name, namespace=self.service_namespace, port=self.service_port
                )
            )
            if "caBundle" in url_config:
                config["caBundle"] = url_config["caBundle"]
            yield config


def self_signed_certificate(host: str, folder: Path) -> tuple[Path, Path]:
    """A certificate for `host` (an IP or DNS name) that is its own CA, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        subject_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject_name = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.SubjectAlternativeName([subject_name]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def webhook_server(config: OperatorConfig) -> kopf.WebhookServer | None:
    """The server for the configured mode; None when admission is off."""
    if config.webhook_mode is WebhookMode.NONE:
        return None
    if config.webhook_mode is WebhookMode.LOCAL:
        folder = Path(tempfile.mkdtemp(prefix="vramgate-webhook-"))
        certfile, pkeyfile = self_signed_certificate(config.webhook_host, folder)
        return kopf.WebhookServer(
            addr=config.webhook_host,
            host=config.webhook_host,
            port=config.webhook_port,
            certfile=str(certfile),
            pkeyfile=str(pkeyfile),
        )
    folder = config.webhook_cert_dir
    cafile = folder / "ca.crt"
    return ServiceWebhookServer(
        service_name=config.webhook_service,
        service_namespace=config.webhook_service_namespace,
        service_port=config.webhook_service_port,
        addr="0.0.0.0",
        port=config.webhook_port,
        certfile=str(folder / "tls.crt"),
        pkeyfile=str(folder / "tls.key"),
        cafile=str(cafile) if cafile.exists() else None,
    )
