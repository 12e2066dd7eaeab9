"""The few Kubernetes API calls the operator makes, with errors sorted into retry-later and give-up.

Generated objects are server-side applied under one field manager: applying the same object twice
writes nothing, and `force` takes back fields someone edited by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import kopf
import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vramgate.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION

FIELD_MANAGER = "vramgate"
READINESS_FIELD_MANAGER = "vramgate-readiness"
PLACEMENT_FIELD_MANAGER = "vramgate-placement"  # the Schedulable condition
APPLY_PATCH = "application/apply-patch+yaml"
RETRY_DELAY_SECONDS = 10
# Conflicts, throttling and server-side failures pass; anything else is the request's own fault.
_TRANSIENT_STATUSES = frozenset({409, 429})


def new_api_client() -> client.ApiClient:
    """In a pod: its service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def api_error(action: str, error: Exception) -> kopf.TemporaryError | kopf.PermanentError:
    """The kopf error for a failed call: temporary for what retrying can fix, permanent otherwise."""
    if isinstance(error, ApiException):
        detail = api_message(error)
        if error.status in _TRANSIENT_STATUSES or error.status >= 500 or error.status == 0:
            return kopf.TemporaryError(f"{action}: {detail}", delay=RETRY_DELAY_SECONDS)
        return kopf.PermanentError(f"{action}: {detail}")
    return kopf.TemporaryError(f"{action}: {error}", delay=RETRY_DELAY_SECONDS)


def api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


CALL_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


def apply(api: client.ApiClient, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply a Deployment or Service; returns the object as stored (plain JSON: client
    models of a whole Deployment cost more to build than the call itself)."""
    metadata, body = manifest["metadata"], dict(manifest)
    options: dict[str, Any] = {
        "field_manager": FIELD_MANAGER,
        "force": True,
        "_content_type": APPLY_PATCH,
        "_preload_content": False,
    }
    answer: Any  # urllib3's response: the client leaves the body unparsed
    if manifest["kind"] == "Deployment":
        answer = client.AppsV1Api(api).patch_namespaced_deployment(
            metadata["name"], metadata["namespace"], body, **options
        )
    elif manifest["kind"] == "Service":
        answer = client.CoreV1Api(api).patch_namespaced_service(
            metadata["name"], metadata["namespace"], body, **options
        )
    elif manifest["kind"] == "LeaderWorkerSet":
        group, version = manifest["apiVersion"].split("/")
        where = (group, version, metadata["namespace"], "leaderworkersets", metadata["name"])
        custom = client.CustomObjectsApi(api)
        answer = custom.patch_namespaced_custom_object(*where, body, **options)
        if not answer.data:  # seen right after the CRD is installed: no body; read it back
            answer = custom.get_namespaced_custom_object(*where, _preload_content=False)
    else:
        raise ValueError(f"cannot apply a {manifest['kind']}")
    return as_dict(json.loads(answer.data))


def as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object from the API server, got {type(value).__name__}")
    return value


def read_llmdeployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The LLMDeployment, or None when it is gone."""
    try:
        found = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return as_dict(found)


# Whose an object is needs only its metadata, and a read from the API server's watch cache
# (resourceVersion 0) spares etcd: admission makes two such reads for every creation.
_METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "Service": "/api/v1/namespaces/{namespace}/services/{name}",
    "LeaderWorkerSet": "/apis/leaderworkerset.x-k8s.io/v1/namespaces/{namespace}/leaderworkersets/{name}",
}


def read_metadata(api: client.ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The metadata of a Deployment, Service or LeaderWorkerSet, as the watch cache holds it; None when
    there is none (nor, for a LeaderWorkerSet, its CRD)."""
    request = api.param_serialize(
        "GET",
        _PATHS[kind],
        path_params={"namespace": namespace, "name": name},
        query_params=[("resourceVersion", "0")],
        header_params={"Accept": _METADATA_ONLY},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    body: bytes = response.read()  # type: ignore[no-untyped-call]
    if response.status == 404:
        return None
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return as_dict(json.loads(body))


def delete(api: client.ApiClient, kind: str, namespace: str, name: str) -> None:
    """Delete a generated Deployment or LeaderWorkerSet; one already gone is fine."""
    try:
        if kind == "Deployment":
            client.AppsV1Api(api).delete_namespaced_deployment(name, namespace)
        else:
            client.CustomObjectsApi(api).delete_namespaced_custom_object(
                "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", name
            )
    except ApiException as error:
        if error.status != 404:
            raise


def apply_llmdeployment_status(
    api: client.ApiClient, metadata: Mapping[str, Any], status: dict[str, Any], *, field_manager: str
) -> None:
    """Server-side apply part of an LLMDeployment's status; conditions merge by type across managers."""
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
        "status": status,
    }
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        metadata["namespace"],
        PLURAL,
        metadata["name"],
        body,
        field_manager=field_manager,
        force=True,
        _content_type=APPLY_PATCH,
    )
