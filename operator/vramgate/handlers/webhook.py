"""The admission webhook server, its certificates, and (local mode) its configuration in the cluster.

Admission is served apart from kopf: an aiohttp server on the main event loop whose handler plans in
a dedicated thread pool, while reconciliation runs in kopf's own thread (`vramgate.operator`). So a
review never waits for a reconcile handler's thread, and standbys, which do not reconcile, serve it too.

The serving certificate is re-read in place when its files change (cert-manager or Helm rotating the
mounted Secret): new connections get the new certificate, nothing restarts, no request is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client

from vramgate.decision import decide
from vramgate.handlers import admission, kube
from vramgate.settings import OperatorConfig, WebhookMode
from vramgate.spec import GROUP, PLURAL, VERSION

CERTIFICATE_DAYS = 365
CERTIFICATE_CHECK_SECONDS = 2.0  # files are tiny; the kubelet refreshes a mounted Secret within ~1 min
ADMISSION_WORKERS = 2
TIMEOUT_SECONDS = 10
# The largest review body served (aiohttp's default is 1 MiB): the API server takes an object of up to
# 3 MiB in a request, and an UPDATE's review carries it twice, as object and oldObject. Larger is 413.
MAX_REVIEW_BYTES = 8 * 1024 * 1024
# Never validated, whatever the watched namespaces: the control plane's own.
EXCLUDED_NAMESPACES = ("kube-system",)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingFiles:
    """The PEM files a webhook server serves with; `ca` is what the API server trusts (caBundle)."""

    certificate: Path
    key: Path
    ca: Path | None = None

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for path in (self.certificate, self.key):
            hasher.update(path.read_bytes())
        return hasher.hexdigest()

    def ca_bundle(self) -> str:
        """Base64 PEM of the CA (the certificate itself when it is self-signed)."""
        return base64.b64encode((self.ca or self.certificate).read_bytes()).decode()


class AdmissionServer:
    """HTTPS server for the validating webhook at `admission.WEBHOOK_PATH`."""

    def __init__(
        self, *, host: str, port: int, files: ServingFiles, existing: admission.Lookup | None = None
    ) -> None:
        self.host = host
        self.existing = existing  # reads what holds a name a creation would generate objects under
        self.port = port
        self.files = files
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(files.certificate, files.key)
        self._digest = files.digest()
        self._executor = ThreadPoolExecutor(ADMISSION_WORKERS, thread_name_prefix="admission")
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REVIEW_BYTES)
        app.router.add_post(admission.WEBHOOK_PATH, self._validate)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=self.context).start()
        # One plan before the first request: imports and catalog caches are warm when it comes.
        await asyncio.get_running_loop().run_in_executor(self._executor, _warm_up)
        self._watcher = asyncio.create_task(self._reload_on_change(), name="certificate reloader")
        logger.info(f"Serving admission on https://{self.host}:{self.port}{admission.WEBHOOK_PATH}")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def reload_if_changed(self) -> bool:
        """Load the certificate files into the serving context when they changed; True if it did.
        A half-written rotation fails to load and is retried on the next check."""
        digest = self.files.digest()
        if digest == self._digest:
            return False
        self.context.load_cert_chain(self.files.certificate, self.files.key)
        self._digest = digest
        logger.info(f"Reloaded the webhook certificate from {self.files.certificate}")
        return True

    async def _reload_on_change(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATE_CHECK_SECONDS)
            try:
                self.reload_if_changed()
            except (OSError, ssl.SSLError) as error:
                logger.warning(f"Webhook certificate not reloaded (will retry): {error}")

    async def _validate(self, request: web.Request) -> web.Response:
        try:
            body = admission.parse_review(await request.read())
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(self._executor, admission.review, body, self.existing)
        except admission.MalformedReviewError as error:
            raise web.HTTPBadRequest(reason=str(error)) from error
        return web.json_response(answer)


def _warm_up() -> None:
    decide({"spec": {"model": {"name": "tiiuae/falcon-7b"}, "workload": {"maxSequenceLength": 1000}}})


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


def serving_files(config: OperatorConfig, scratch: Path) -> ServingFiles:
    """The files in the certificate folder (tls.crt, tls.key, optionally ca.crt); in local mode
    without them, a fresh self-signed certificate in `scratch`."""
    folder = config.webhook_cert_dir
    if config.webhook_mode is WebhookMode.LOCAL and not (folder / "tls.crt").exists():
        certificate, key = self_signed_certificate(config.webhook_host, scratch)
        return ServingFiles(certificate, key)
    ca = folder / "ca.crt"
    return ServingFiles(folder / "tls.crt", folder / "tls.key", ca if ca.exists() else None)


def namespace_selector(config: OperatorConfig, own_namespace: str | None) -> dict[str, Any]:
    """Only the watched namespaces; never kube-system or the operator's own, so a webhook that is
    down (failurePolicy Fail) blocks nothing the operator does not manage."""
    excluded = [*EXCLUDED_NAMESPACES, *([own_namespace] if own_namespace else [])]
    expressions: list[dict[str, Any]] = [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}
    ]
    if config.namespaces:
        expressions.append(
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(config.namespaces)}
        )
    return {"matchExpressions": expressions}


def webhook_configuration(
    config: OperatorConfig, client_config: Mapping[str, Any], own_namespace: str | None
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration the operator writes when it manages one (local mode)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": config.webhook_configuration},
        "webhooks": [
            {
                "name": admission.WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",  # `kubectl apply --dry-run=server` may call it
                "failurePolicy": "Fail",
                "timeoutSeconds": TIMEOUT_SECONDS,
                "matchPolicy": "Equivalent",
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": [PLURAL],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": namespace_selector(config, own_namespace),
                "clientConfig": dict(client_config),
            }
        ],
    }


def client_config(config: OperatorConfig, files: ServingFiles) -> dict[str, Any]:
    """How the API server reaches this webhook: a URL on loopback, or the Service in cluster."""
    if config.webhook_mode is WebhookMode.LOCAL:
        url = f"https://{config.webhook_host}:{config.webhook_port}{admission.WEBHOOK_PATH}"
        return {"url": url, "caBundle": files.ca_bundle()}
    service = {
        "name": config.webhook_service,
        "namespace": config.webhook_service_namespace,
        "port": config.webhook_service_port,
        "path": admission.WEBHOOK_PATH,
    }
    return {"service": service, "caBundle": files.ca_bundle()}


def register(api: client.ApiClient, configuration: Mapping[str, Any]) -> None:
    """Server-side apply the webhook configuration (taking it over from any earlier writer)."""
    client.AdmissionregistrationV1Api(api).patch_validating_webhook_configuration(
        configuration["metadata"]["name"],
        dict(configuration),
        field_manager=kube.FIELD_MANAGER,
        force=True,
        _content_type=kube.APPLY_PATCH,
    )
