"""Start-up and clean-up of one operator process, its login, and its health probe."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web

from lb_operator.api import GROUP
from lb_operator.handlers import bookkeeping, metrics
from lb_operator.handlers.changes import reconcile
from lb_operator.handlers.drift import DriftSweep
from lb_operator.handlers.events import post_event
from lb_operator.handlers.journal import Journal
from lb_operator.handlers.pending import Pending
from lb_operator.handlers.running import busy, running
from lb_operator.handlers.runtime import close_context, open_context
from lb_operator.reconcile.engine import Context
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource
from lb_operator.services.controller import ServiceController
from lb_operator.services.translate import Defaults
from lb_operator.sharding import FINALIZER, SHARD_LABEL
from lb_operator.sharding.members import live_members
from lb_operator.sharding.replica import Replica
from lb_operator.sharding.ring import owner
from lb_operator.sharding.streams import Mirror

logger = logging.getLogger(__name__)

WATCH_SECONDS = 300
"""Seconds the API server keeps one of Kopf's watch streams open before Kopf opens the next."""

API_TIMEOUT = 30.0
"""Seconds any one of Kopf's requests may take (Kopf's default: 300). Kopf's watches are also cut when
silent for ``watching.inactivity_timeout`` (70 s: the server sends a bookmark every minute)."""


async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = bookkeeping.UnmarkedProgress()
    settings.persistence.diffbase_storage = bookkeeping.HandledInStatus()  # no write of its own
    settings.posting.loggers = False  # Events are our own (kopf.event), one per cause; never log lines
    settings.peering.standalone = True  # active-active replicas: Kopf peering would freeze equal peers
    settings.watching.server_timeout = WATCH_SECONDS
    settings.watching.client_timeout = WATCH_SECONDS + API_TIMEOUT
    settings.watching.connect_timeout = API_TIMEOUT
    settings.networking.request_timeout = API_TIMEOUT
    settings.networking.connect_timeout = API_TIMEOUT
    context: Context = memo.get("context") or await open_context(post_event)  # once, should Kopf retry
    memo["context"] = context
    if context.settings.handler_journal is not None:
        journal = memo["journal"] = Journal(context.settings.handler_journal)
        context.wrote = journal.wrote
    if context.settings.metrics_port and "metrics" not in memo:
        address, port = context.settings.listen_address, context.settings.metrics_port
        try:
            memo["metrics"] = await metrics.serve(address, port)
        except OSError as error:  # e.g. the port is taken: say so and stop, rather than retry for ever
            problem = f"cannot serve metrics on {address}:{port} (LBOP_METRICS_PORT): {error}"
            raise kopf.PermanentError(problem) from None
    settings.queueing.exit_timeout = context.settings.shutdown_grace
    pending = memo.get("pending") or Pending(context.settings.handler_timeout)
    memo["pending"] = pending
    if context.mirror is not None and "drift" not in memo:
        memo["drift"] = _sweep(memo, context, context.mirror)  # started by the first watch event
    if (
        context.settings.sharding
        and context.mutex is not None
        and context.api is not None
        and context.mirror is not None
    ):
        # Server-side: this replica's Kopf sees only the objects labelled for it.
        own = f"{SHARD_LABEL}={context.settings.identity}"
        settings.watching.label_selectors[GROUP, kopf.EVERYTHING] = own
        replica = Replica(
            context.api,
            context.mutex,
            context.settings.identity,
            context.mirror,
            context.settings.nudge_interval,
            functools.partial(_leaving, context, pending),
        )
        replica.start()
        memo["replica"] = replica
    if context.settings.services and context.api is not None and context.mirror is not None:
        memo["services"] = _services(context, context.mirror)


def _services(context: Context, mirror: Mirror) -> ServiceController:
    """This replica's part of serving classed Services: with sharding, the trees it owns."""
    settings = context.settings
    watch = context.mutex.watch if context.mutex is not None else None

    def owns(root: str) -> bool:
        if not settings.sharding or watch is None:
            return True
        return owner(root, live_members(watch)) == settings.identity

    defaults = Defaults(
        backend=settings.backend,
        member_subnet=settings.service_member_subnet,
        zone=settings.service_zone,
        vip_subnet=settings.service_vip_subnet,
    )
    assert context.api is not None
    return ServiceController(context.api, mirror, defaults, owns)


def _heard(memo: kopf.Memo) -> ServiceController | None:
    """The replica's ServiceController, started by the first event it hears: in a handler's context, so
    that it can post Events through Kopf (start-up has no poster yet)."""
    services: ServiceController | None = memo.get("services")
    if services is not None:
        services.start()
    return services


async def on_service(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services = _heard(memo)
    if services is not None:
        services.service_event(type, body)


async def on_node(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services = _heard(memo)
    if services is not None:
        services.node_event(type, body)


async def on_endpoint_slice(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    services = _heard(memo)
    if services is not None:
        services.slice_event(type, body)


def _sweep(memo: kopf.Memo, context: Context, mirror: Mirror) -> DriftSweep:
    """The replica's drift checks (``drift.DriftSweep``), each run as a handler run is (``running``)."""

    async def check(body: Mapping[str, Any], retries: int) -> None:
        async with running(memo, body):
            await reconcile(body, retries, memo, resync=True)

    return DriftSweep(
        mirror,
        context.settings.resync_interval,
        context.shard,
        check,
        lambda uid: busy(memo, uid),
        context.settings.shutdown_grace,
    )


def _leaving(context: Context, pending: Pending, body: Mapping[str, Any], going: bool) -> None:
    """A drained object whose change is under way: withdrawn if it does not hold the lock yet; if it
    waits for its parent, it stops waiting now."""
    obj = Resource.from_body(body)
    if not going:
        context.leaving.discard(obj.uid)
        return
    context.leaving.add(obj.uid)
    pending.withdraw(obj.uid, "it is drained to another replica")
    adapter = ADAPTERS.get(obj.kind)
    ref = adapter.parent_ref(obj) if adapter is not None else None
    if ref is not None:
        context.parents.wake(ref)


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    services: ServiceController | None = memo.get("services")
    if services is not None:
        await services.stop()
    pending: Pending | None = memo.get("pending")
    context = memo.get("context")
    if pending is not None and context is not None:
        await pending.close(context.settings.shutdown_grace)  # before the objects go to the others
    drift: DriftSweep | None = memo.get("drift")
    if drift is not None:
        await drift.stop()  # checks under way get their grace
    replica: Replica | None = memo.get("replica")
    if replica is not None:
        await replica.stop()  # the member Lease last: survivors take over at once
    if context is not None:
        await close_context(context)
    journal: Journal | None = memo.get("journal")
    if journal is not None:
        journal.close()  # a line recorded after this opens the file again
    served: web.AppRunner | None = memo.get("metrics")
    if served is not None:
        await served.cleanup()


class Blind(Exception):
    """A watch of this process showed no life within its bound: it cannot see the cluster."""


async def on_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """``/healthz``: fails (HTTP 500) while this replica cannot see or reach the API server.

    That is: one of our watches silent past its bound (``WatchHealth``), the
    lock Leases' watch holding back a write of ours for two lease durations
    (it is cut and listed again meanwhile, so this lasts only while the API
    server cannot be reached), or — with sharding — this replica out of the
    membership for two lease durations (it cannot renew its member Lease:
    its objects have gone to the others).
    """
    context: Context | None = memo.get("context")
    if context is None:
        return {"starting": True}
    stale = context.health.stale()
    if context.mutex is not None:
        bound = 2 * context.mutex.settings.lease_duration
        stalled = context.mutex.watch.stalled_for()
        if stalled > bound:
            stale["lock lease watch (our writes not delivered)"] = stalled
        replica: Replica | None = memo.get("replica")
        out = replica.membership.out_for() if replica is not None else 0.0
        if out > bound:
            stale["member lease (not renewed)"] = out
    if stale:
        silent = ", ".join(f"{name} for {seconds:.0f}s" for name, seconds in sorted(stale.items()))
        raise Blind(f"cannot see or reach the API server: {silent}")
    return {"watches": "live"}


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
