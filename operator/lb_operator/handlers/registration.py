"""Which handler serves which Kopf cause: the whole list, for every kind.

- create, update, resume → ``changes.on_change`` (one reconcile; a restarted
  replica picks up everything);
- delete → ``deletion.on_delete`` (the cloud object goes before the finalizer);
- every watch event → ``drift.on_event`` (a change of an object that left
  this replica is withdrawn); the periodic drift check is one sweep per
  replica (``drift.DriftSweep``, started in ``lifecycle``), not a handler;
- start-up, clean-up, login, ``/healthz`` → ``lifecycle``;
- with ``services``: every Service, Node and EndpointSlice event →
  ``services.controller`` (``on.event`` only: Kopf keeps no state on them).
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

DEPARTURES_ID = "departures"
"""The handler id of ``drift.on_event``, which sees every watch event."""
HEARING_IDS = ("services", "nodes", "endpointslices")
"""The handler ids of the Service controller's ``on.event`` handlers: they only note what they heard."""


def register(registry: kopf.OperatorRegistry, *, services: bool = False) -> None:
    """Register every handler of every kind on ``registry``; with ``services``, hear Services too."""
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RetriesAreNotErrors) for f in objects_logger.filters):
        objects_logger.addFilter(RetriesAreNotErrors())
        objects_logger.addFilter(BookkeepingIsQuiet(DEPARTURES_ID, *HEARING_IDS))
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
    if services:
        kopf.on.event("v1", "services", registry=registry, id=HEARING_IDS[0])(lifecycle.on_service)
        kopf.on.event("v1", "nodes", registry=registry, id=HEARING_IDS[1])(lifecycle.on_node)
        kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry, id=HEARING_IDS[2])(
            lifecycle.on_endpoint_slice
        )
