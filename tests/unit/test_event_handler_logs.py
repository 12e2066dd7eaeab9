"""kopf's per-event success lines are dropped for the watch handlers, and only for them."""

from __future__ import annotations

import logging

from vramgate.handlers import reconcile
from vramgate.handlers.reconcile import QuietEventHandlers


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)


def test_a_deployment_event_handled_logs_nothing() -> None:
    assert not QuietEventHandlers().filter(_record("Handler 'watch_generated_deployment' succeeded."))


def test_the_reconcile_success_and_event_handler_failures_still_log() -> None:
    quiet = QuietEventHandlers()
    assert quiet.filter(_record("Handler 'reconcile_llmdeployment' succeeded."))
    assert quiet.filter(_record("Handler 'watch_generated_deployment' failed temporarily: 409 Conflict"))


def test_the_quiet_handlers_are_the_modules_event_handlers() -> None:
    assert all(callable(getattr(reconcile, name, None)) for name in QuietEventHandlers.handlers)
