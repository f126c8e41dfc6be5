"""Which handler serves which Kopf cause: the whole list, for every kind.

- create, update, resume → ``changes.on_change`` (one reconcile; a restarted
  replica picks up everything);
- delete → ``deletion.on_delete`` (the cloud object goes before the finalizer);
- a daemon per object → ``drift.on_drift`` (the periodic drift check), ended
  when the object leaves this replica (``drift.on_event``);
- start-up, clean-up, login, ``/healthz`` → ``lifecycle``.
"""

from __future__ import annotations

import logging

import kopf

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.handlers import changes, deletion, drift, lifecycle
from lb_operator.handlers.events import (
    BookkeepingIsQuiet,
    EmptiedAnnotationsAreConsistent,
    RetriesAreNotErrors,
)

DRIFT_ID = "drift"
"""The drift daemon's handler id."""

DRIFT_STOP_GRACE = 20.0
"""Seconds a drift check under way may take to finish when Kopf stops its daemon (the object's deletion
began, or the replica stops), before Kopf cancels it: a check cut off mid-change leaves a change in
doubt. Below the chart's 30 s termination grace."""

DEPARTURES_ID = "departures"
"""The handler id of ``drift.on_event``, which sees every watch event."""


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every handler of every kind on ``registry``."""
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RetriesAreNotErrors) for f in objects_logger.filters):
        objects_logger.addFilter(RetriesAreNotErrors())
        objects_logger.addFilter(BookkeepingIsQuiet(DEPARTURES_ID))
        objects_logger.addFilter(EmptiedAnnotationsAreConsistent())

    kopf.on.login(registry=registry)(lifecycle.login)
    kopf.on.startup(registry=registry)(lifecycle.on_startup)
    kopf.on.cleanup(registry=registry)(lifecycle.on_cleanup)
    kopf.on.probe(registry=registry, id="watches")(lifecycle.on_probe)
    for kind in ALL_KINDS:
        for event in (kopf.on.create, kopf.on.update, kopf.on.resume):
            event(GROUP, VERSION, kind.plural, registry=registry, id="reconcile")(changes.on_change)
        kopf.on.delete(GROUP, VERSION, kind.plural, registry=registry, id="delete")(deletion.on_delete)
        kopf.on.event(GROUP, VERSION, kind.plural, registry=registry, id=DEPARTURES_ID)(drift.on_event)
        kopf.daemon(GROUP, VERSION, kind.plural, registry=registry, id=DRIFT_ID, cancellation_timeout=1.0)(
            drift.on_drift
        )
