"""Kubernetes Events on the operator's objects, and Kopf's log lines at the level they deserve."""

from __future__ import annotations

import logging
import re
from typing import Any

import kopf

from lb_operator.api import GROUP, VERSION
from lb_operator.reconcile.resources import Resource


def _reference(obj: Resource) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": obj.kind,
        "metadata": {"name": obj.name, "namespace": obj.namespace, "uid": obj.uid},
    }


def post_event(obj: Resource, type_: str, reason: str, message: str) -> None:
    """Post an Event on ``obj`` through Kopf's poster (batched, never blocks the handler)."""
    kopf.event(_reference(obj), type=type_, reason=reason, message=message)  # type: ignore[arg-type]


class RetriesAreNotErrors(logging.Filter):
    """Kopf logs every ``TemporaryError`` at ERROR ("Handler 'reconcile' failed temporarily: …").

    These handlers raise it for normal waiting (a parent, a load balancer
    being built) and for problems they have logged themselves, once per
    cause, at WARNING. So Kopf's line is INFO: ERROR is left for what a
    person should look at.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class BookkeepingIsQuiet(logging.Filter):
    """Kopf logs every run of every handler at INFO ("Handler 'departures' succeeded."). The departures
    handler runs on every watch event of every object and only sets a flag, as the Service controller's
    handlers of Services, Nodes and EndpointSlices only note what they heard: one line per event would
    drown the log. Their failures still show (they are not "succeeded")."""

    def __init__(self, *handler_ids: str) -> None:
        super().__init__()
        self._lines = {f"Handler {handler_id!r} succeeded." for handler_id in handler_ids}

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and str(record.msg) in self._lines)


class EmptiedAnnotationsAreConsistent(logging.Filter):
    """Kopf checks each of its patches against the object the API server returns, and warns of any
    difference. Removing its retry record when it was the object's last annotation is one: the API
    server drops the empty map, and Kopf takes that for the patch not applied ("Merge-patching finished
    with inconsistencies"). Only that case is let through at DEBUG; any other difference still warns."""

    _ONLY_REMOVED = re.compile(
        r"Merge-patching finished with inconsistencies: "
        r"\(\('remove', \('metadata', 'annotations'\), \{'[^']+': None(, '[^']+': None)*\}, None\),\)"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and self._ONLY_REMOVED.fullmatch(str(record.msg)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True
