"""The operator: `kopf run -m vramgate.operator --standalone -A`, or `python -m vramgate.operator`.

Importing this module registers every handler with kopf; the start-up handler applies the settings
from the environment (`vramgate.settings`) to kopf and opens the API client and metrics endpoint.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from vramgate import metrics
from vramgate.handlers import admission, reconcile
from vramgate.handlers.persistence import MemoryProgressStorage, ObservedGenerationDiffBase
from vramgate.handlers.kube import new_api_client
from vramgate.handlers.webhook import webhook_server
from vramgate.settings import OperatorConfig
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
    settings.admission.server = webhook_server(config)
    settings.admission.managed = config.webhook_configuration or None


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    config = OperatorConfig.from_environ()
    configure(settings, config)
    memo[reconcile.API_CLIENT] = new_api_client()
    metrics.serve(config.metrics_port)
    logger.info(
        f"vramgate started: webhook {config.webhook_mode.value}, metrics port {config.metrics_port or 'off'}"
    )


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    api = memo.get(reconcile.API_CLIENT)
    if api is not None:
        api.close()


def run() -> None:
    """Run the operator with everything taken from the environment (the demo's and the image's way)."""
    config = OperatorConfig.from_environ()
    kopf.configure(log_format=_LOG_FORMATS[config.log_format])
    kopf.run(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None,
    )


if __name__ == "__main__":
    run()
