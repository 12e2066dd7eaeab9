"""The admission path: an AdmissionReview in, the answer out; and the HTTPS server that serves it,
with its certificate rotated underneath while requests keep coming."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes.client.exceptions import ApiException

from support.certificates import mount_serving_certificate
from support.controlplane import free_loopback_ports
from support.pki import CertificateAuthority
from vramgate.decision import Decision, DecisionContext, decide
from vramgate.handlers import admission
from vramgate.handlers.admission import (
    REFUSAL_CODE,
    WEBHOOK_PATH,
    MalformedReviewError,
    parse_review,
    review,
)
from vramgate.handlers.webhook import MAX_REVIEW_BYTES, AdmissionServer, ServingFiles

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    resource["metadata"]["namespace"] = "team-a"
    return resource


def admission_review(resource: dict[str, Any], operation: str = "CREATE", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": operation, "object": resource, **extra},
    }


def test_a_fitting_resource_is_allowed() -> None:
    answer = review(admission_review(example("falcon-7b-a10g.yaml")))
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"] == {"uid": "u-1", "allowed": True}


def test_a_resource_that_does_not_fit_is_refused_with_the_decision_message() -> None:
    too_big = example("llama-3.1-70b-too-big.yaml")
    response = review(admission_review(too_big))["response"]
    assert response["allowed"] is False
    assert response["status"] == {"code": REFUSAL_CODE, "message": decide(too_big).message}


def test_an_update_that_keeps_the_spec_is_not_planned() -> None:
    """A stored resource that stopped fitting can still get labels and the operator's bookkeeping."""
    too_big = example("llama-3.1-70b-too-big.yaml")
    relabelled = {**too_big, "metadata": {**too_big["metadata"], "labels": {"team": "a"}}}
    response = review(admission_review(relabelled, "UPDATE", oldObject=too_big))["response"]
    assert response == {"uid": "u-1", "allowed": True}
    changed = review(admission_review(too_big, "UPDATE", oldObject=example("falcon-7b-a10g.yaml")))
    assert changed["response"]["allowed"] is False


def test_the_decision_warnings_go_back_as_admission_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    def decide_with_warning(resource: dict[str, Any], context: DecisionContext | None = None) -> Decision:
        return Decision(True, "fits", warnings=("only 1 A10G node is free",))

    monkeypatch.setattr(admission, "decide", decide_with_warning)
    response = review(admission_review(example("falcon-7b-a10g.yaml")))["response"]
    assert response == {"uid": "u-1", "allowed": True, "warnings": ["only 1 A10G node is free"]}


@pytest.mark.parametrize("body", [{}, {"request": {"object": {}}}, {"request": {"uid": "u"}}])
def test_a_body_that_is_no_admission_review_is_a_bad_request(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedReviewError):
        review(body)


@pytest.mark.parametrize(
    "body", [b"[]", b'"review"', b"7", b"not json", b"\xff\xfe", b"[" * 100_000, b'{"a": ' * 100_000]
)
def test_a_body_that_is_not_a_json_object_is_a_bad_request(body: bytes) -> None:
    """Whatever reaches the port (a list, a string, bytes, nesting past the parser's recursion limit)
    is answered 400 by the server, never 500 with a traceback."""
    with pytest.raises(MalformedReviewError):
        review(parse_review(body))


def test_an_update_from_metadata_of_the_wrong_shape_is_decided_not_raised() -> None:
    resource = example("falcon-7b-a10g.yaml")
    broken = {**resource, "metadata": ["falcon"]}
    assert review(admission_review(resource, "UPDATE", oldObject=broken))["response"]["allowed"] is True


async def _post(port: int, ca: ssl.SSLContext, body: bytes) -> tuple[int, dict[str, Any], int]:
    """POST to the webhook over a new TLS connection; (status, JSON body, serial of the certificate)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ca, server_hostname="127.0.0.1")
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        serial = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True)).serial_number
        writer.write(
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(payload) if status == 200 else {}, serial


def test_the_server_answers_a_large_update_and_refuses_bodies_that_are_not_reviews(tmp_path: Path) -> None:
    """An update of a resource with 1.2 MiB of env values (as the schema allows) is a 2.4 MiB review:
    decided, where aiohttp's 1 MiB default answered 413; a body that is no JSON object is a 400 and one
    past the limit a 413, neither a 500."""
    ca = CertificateAuthority.create("webhook-ca")
    mount_serving_certificate(tmp_path, ca, "127.0.0.1")
    (port,) = free_loopback_ports(1)
    client = ssl.create_default_context(cadata=ca.certificate_pem.decode())
    resource = example("falcon-7b-a10g.yaml")
    resource["spec"]["runtime"] = {"env": [{"name": f"V{i}", "value": "x" * 32000} for i in range(40)]}
    previous = copy.deepcopy(resource)
    previous["spec"]["runtime"]["env"][0]["value"] = "y"
    large = json.dumps(admission_review(resource, "UPDATE", oldObject=previous)).encode()
    bodies = [large, b"[" * 100_000, b" " * (MAX_REVIEW_BYTES + 1)]

    async def scenario() -> list[tuple[int, dict[str, Any], int]]:
        server = AdmissionServer(
            host="127.0.0.1", port=port, files=ServingFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
        )
        await server.start()
        try:
            return [await _post(port, client, body) for body in bodies]
        finally:
            await server.stop()

    (large_status, answer, _), (nested_status, _, _), (huge_status, _, _) = asyncio.run(scenario())
    assert len(large) > 2 * 1024 * 1024 and large_status == 200 and answer["response"]["allowed"] is True
    assert (nested_status, huge_status) == (400, 413)


def test_rotating_the_certificate_files_under_load_drops_no_request(tmp_path: Path) -> None:
    """Requests keep flowing while the mounted certificate is rotated twice, the kubelet's way: every
    one is answered, and connections made after a rotation get the new certificate."""
    ca = CertificateAuthority.create("webhook-ca")
    first = mount_serving_certificate(tmp_path, ca, "127.0.0.1")
    (port,) = free_loopback_ports(1)
    files = ServingFiles(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")
    client = ssl.create_default_context(cadata=ca.certificate_pem.decode())
    body = json.dumps(admission_review(example("falcon-7b-a10g.yaml"))).encode()

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        server = AdmissionServer(host="127.0.0.1", port=port, files=files)
        await server.start()
        statuses: list[int] = []
        serials: list[int] = []
        rotations: list[int] = []
        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set():
                status, answer, serial = await _post(port, client, body)
                statuses.append(status if answer.get("response", {}).get("allowed") else -status)
                serials.append(serial)

        writers = [asyncio.create_task(traffic()) for _ in range(3)]
        try:
            for _ in range(2):
                await asyncio.sleep(1)
                rotations.append(mount_serving_certificate(tmp_path, ca, "127.0.0.1"))
                await asyncio.sleep(3)  # the server checks the files every 2 s
            stop.set()
            await asyncio.gather(*writers)
        finally:
            await server.stop()
        return statuses, serials, rotations

    statuses, serials, rotations = asyncio.run(scenario())
    assert len(statuses) > 20
    assert set(statuses) == {200}, "every request answered and allowed"
    assert serials[0] == first and serials[-1] == rotations[-1]
    assert set(serials) == {first, *rotations}


def test_a_creation_under_a_name_someone_else_holds_is_refused_and_an_update_is_not_looked_up() -> None:
    """The reconciler never applies over another's object, so admission refuses the creation that
    would need it, naming the holder; an earlier LLMDeployment's leftover (the garbage collector's) is
    no obstacle, and a failed read admits with a warning (the reconciler checks again)."""
    falcon = example("falcon-7b-a10g.yaml")
    name = falcon["metadata"]["name"]
    foreign_service = {"metadata": {"name": name, "namespace": "team-a", "labels": {"app": "web"}}}
    leftover = {
        "metadata": {
            "name": name,
            "ownerReferences": [
                {"apiVersion": "vramgate.dev/v1alpha1", "kind": "LLMDeployment", "name": name,
                 "uid": "an-earlier-uid", "controller": True}
            ],
        }
    }  # fmt: skip
    asked: list[tuple[str, str, str]] = []

    def holding(held: dict[tuple[str, str], dict[str, Any]]) -> admission.Lookup:
        def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            asked.append((kind, namespace, name))
            return held.get((kind, name))

        return lookup

    refused = review(admission_review(falcon), holding({("Service", name): foreign_service}))["response"]
    assert refused["allowed"] is False and refused["status"]["code"] == REFUSAL_CODE
    assert refused["status"]["message"] == (
        f"metadata.name: {name!r} is taken: Service team-a/{name} already exists and was not generated for "
        "this LLMDeployment (controlled by nothing); vramgate never takes over an object it did not create. "
        f"Allowed: a name whose Deployment ({name}), LeaderWorkerSet ({name}-lws) and Service ({name}) no "
        "object in team-a holds yet, or delete that Service first"
    )
    assert asked == [("Deployment", "team-a", name), ("Service", "team-a", name)]
    allowed = review(admission_review(falcon), holding({("Deployment", name): leftover}))["response"]
    assert allowed == {"uid": "u-1", "allowed": True}

    def failing(kind: str, namespace: str, name: str) -> None:
        raise ApiException(status=500, reason="etcd timeout")

    warned = review(admission_review(falcon), failing)["response"]
    assert (
        warned["allowed"] is True and "could not check that no Deployment team-a/" in warned["warnings"][-1]
    )
    asked.clear()
    update = review(
        admission_review(falcon, "UPDATE", oldObject={}), holding({("Service", name): foreign_service})
    )
    assert update["response"]["allowed"] is True and asked == []
