"""The operator: `kopf run -m vramgate.operator --standalone -A`, or `python -m vramgate.operator`.

Importing this module registers every handler with kopf; the start-up handler applies the settings
from the environment (`vramgate.settings`) to kopf and opens the API client and metrics endpoint.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vramgate import metrics
from vramgate.handlers import admission, reconcile
from vramgate.handlers.kube import api_message, new_api_client
from vramgate.handlers.persistence import MemoryProgressStorage, ObservedGenerationDiffBase
from vramgate.handlers.webhook import webhook_server
from vramgate.settings import ENV_PREFIX, OperatorConfig
from vramgate.spec import GROUP

__all__ = ["admission", "configure", "reconcile", "run"]

REPORTING_COMPONENT = "vramgate"
_LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's settings for vramgate: its own names on objects and events, admission per config."""
    settings.posting.reporting_component = REPORTING_COMPONENT
    # kopf would post an Event for every handler run ("succeeded", "processed"): a write per object on
    # each restart. Warnings and errors still become Events; decisions are posted with `kopf.event`,
    # which this level does not filter.
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = MemoryProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = ObservedGenerationDiffBase()
    settings.peering.standalone = True
    if config.namespace_selector:
        # kopf lists and watches namespaces with this selector, so it serves exactly the labelled ones,
        # following labels as they change; the API server evaluates it.
        settings.watching.label_selectors["namespaces"] = config.namespace_selector
    settings.admission.server = webhook_server(config)
    settings.admission.managed = config.webhook_configuration or None


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    config = OperatorConfig.from_environ()
    configure(settings, config)
    api = new_api_client()
    check_namespace_selector(api, config.namespace_selector)
    memo[reconcile.API_CLIENT] = api
    metrics.serve(config.metrics_port)
    logger.info(
        f"vramgate started: webhook {config.webhook_mode.value}, metrics port {config.metrics_port or 'off'}"
    )


def check_namespace_selector(api: client.ApiClient, selector: str) -> None:
    """Have the API server parse the selector once, so a typo stops start-up with its reason instead
    of failing every namespace list afterwards."""
    if not selector:
        return
    try:
        client.CoreV1Api(api).list_namespace(label_selector=selector, limit=1)
    except ApiException as error:
        if error.status == 400:
            raise kopf.PermanentError(
                f"{ENV_PREFIX}NAMESPACE_SELECTOR {selector!r} is not a label selector: {api_message(error)}"
            ) from error
        raise


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    api = memo.get(reconcile.API_CLIENT)
    if api is not None:
        api.close()


def run() -> None:
    """Run the operator with everything taken from the environment (the demo's and the image's way)."""
    config = OperatorConfig.from_environ()
    kopf.configure(log_format=_LOG_FORMATS[config.log_format])
    # With a selector, kopf observes namespaces (all names, narrowed by the selector) instead of
    # watching cluster-wide.
    namespaces = config.namespaces or (("*",) if config.namespace_selector else ())
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None,
    )


if __name__ == "__main__":
    run()
