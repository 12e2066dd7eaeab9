"""A real HTTPS admission webhook on loopback, so tests can watch what the API server sends.

The API server calls webhooks only over TLS it can verify, hence a throwaway CA whose
bundle goes into the webhook configuration's ``clientConfig.caBundle``.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from support.pki import CertificateAuthority, write_key_pair

AdmissionRequest = dict[str, Any]
Decide = Callable[[AdmissionRequest], str | None]
"""Returns a denial message, or None to allow the request."""


class RecordingWebhook:
    """Serves ``/validate`` on ``host``: answers each AdmissionReview with ``decide`` and
    records the ``request`` part of every review it received, in order.

    ``host`` must be an address the API server can reach: loopback for the local control
    plane, the Docker network gateway for kind (whose API server runs in a container).
    """

    def __init__(self, decide: Decide, host: str = "127.0.0.1") -> None:
        self.decide = decide
        self.host = host
        self.requests: list[AdmissionRequest] = []
        self._ca = CertificateAuthority.create("smoke-webhook-ca")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_bundle(self) -> str:
        """Base64 PEM, as ``clientConfig.caBundle`` wants it."""
        return base64.b64encode(self._ca.certificate_pem).decode()

    @property
    def url(self) -> str:
        assert self._server is not None, "the webhook is not running"
        return f"https://{self.host}:{self._server.server_address[1]}/validate"

    def __enter__(self) -> Self:
        certificate, key = self._ca.issue_serving_certificate("smoke-webhook", [self.host])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:
            write_key_pair(certificate, key, Path(folder) / "tls.crt", Path(folder) / "tls.key")
            context.load_cert_chain(Path(folder) / "tls.crt", Path(folder) / "tls.key")
        self._server = ThreadingHTTPServer((self.host, 0), self._handler_class())
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="smoke-webhook", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def _review(self, review: dict[str, Any]) -> dict[str, Any]:
        request: AdmissionRequest = review["request"]
        self.requests.append(request)
        denial = self.decide(request)
        response: dict[str, Any] = {"uid": request["uid"], "allowed": denial is None}
        if denial is not None:
            response["status"] = {"code": 403, "message": denial}
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps(webhook._review(review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: pytest output is for failures, and requests are recorded anyway."""

        return Handler
