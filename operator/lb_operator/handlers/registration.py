"""Kopf handlers: thin. Each turns a Kopf call into one reconcile, and its outcome into status and Events.

Every kind gets the same four: create, update and resume (so a restarted
replica picks up everything) all reconcile; delete removes the cloud object
before Kopf lets the finalizer go.

Deadlines: Kopf never cancels a running handler by itself, so each attempt
carries its own deadline (``handler_timeout``); the lock wait gets what is
left of it. Past it the attempt ends with ``kopf.TemporaryError`` and Kopf
retries later, with back-off; nothing is failed for good by a slow lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from aiohttp import web
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.cloud import CloudError, Invalid, NotFound
from lb_operator.handlers import metrics, status
from lb_operator.handlers.runtime import close_context, open_context
from lb_operator.mutex import HoldLost, LockTimeout
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import (
    Context,
    DeadlineExceeded,
    NoLongerOurs,
    ParentNotReady,
    family_key,
)
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource
from lb_operator.settings import OperatorSettings
from lb_operator.sharding import SHARD_LABEL
from lb_operator.sharding.drain import refuses
from lb_operator.sharding.replica import Replica

logger = logging.getLogger(__name__)


RESYNC_ID = "resync"
"""The drift-check timer's handler id."""

DEGRADED_RECHECK = 30.0
"""Seconds between looks at a load balancer the cloud reports `degraded` or `error`."""

PARENT_RETRY = 0.2
"""Seconds before a child waiting for its parent looks again. Short: each attempt waits on the parent's
watch itself (woken at once when it changes), so this only bridges the gap between attempts."""


def _backoff(ctx: Context, retry: int) -> float:
    return float(min(ctx.settings.retry_delay * 2 ** min(retry, 10), ctx.settings.retry_delay_max))


def _reference(obj: Resource) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": obj.kind,
        "metadata": {"name": obj.name, "namespace": obj.namespace, "uid": obj.uid},
    }


def post_event(obj: Resource, type_: str, reason: str, message: str) -> None:
    kopf.event(_reference(obj), type=type_, reason=reason, message=message)  # type: ignore[arg-type]


def _deadline(ctx: Context) -> float:
    return asyncio.get_running_loop().time() + ctx.settings.handler_timeout


@contextlib.asynccontextmanager
async def _owned(memo: kopf.Memo, body: Mapping[str, Any]) -> AsyncIterator[None]:
    """Mark a handler as running on this object (a drain waits for it); refuse one being drained away."""
    replica: Replica | None = memo.get("replica")
    uid = str(body["metadata"]["uid"])
    if replica is not None and refuses(body):
        raise kopf.TemporaryError("moving to another replica; it will continue there", delay=5)
    with replica.drainer.working_on(uid) if replica is not None else contextlib.nullcontext():
        journal = memo["context"].settings.handler_journal
        if journal is not None:
            await asyncio.to_thread(_journal, journal, uid, "start")
        try:
            yield
        finally:
            if journal is not None:
                await asyncio.to_thread(_journal, journal, uid, "end")


def _journal(path: Path, uid: str, what: str) -> None:
    line = json.dumps({"uid": uid, "event": what, "pid": os.getpid(), "t": time.monotonic()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one short write on O_APPEND: lines of processes never interleave
    finally:
        os.close(fd)


async def on_change(
    body: Mapping[str, Any], patch: kopf.Patch, retry: int, memo: kopf.Memo, **_: Any
) -> None:
    """Create, update, resume: make the cloud match the spec, then report it in status."""
    async with _owned(memo, body):
        await _reconcile(body, patch, retry, memo)


async def _reconcile(
    body: Mapping[str, Any], patch: kopf.Patch, retry: int, memo: kopf.Memo, *, resync: bool = False
) -> None:
    obj = Resource.from_body(body)
    counted = _Counted()
    try:
        await _attempt(obj, patch, retry, memo, resync, counted)
    except NoLongerOurs:
        counted.outcome = "NoLongerOurs"
        raise
    except asyncio.CancelledError:
        counted.outcome = "Cancelled"  # Kopf's shutdown cancelled it
        raise
    finally:
        trigger = "resync" if resync else "change"
        metrics.RECONCILES.labels(kind=obj.kind, trigger=trigger, outcome=counted.outcome).inc()


@dataclass
class _Counted:
    """The outcome label of one attempt in ``lbop_reconciles_total``, set where the attempt ends."""

    outcome: str = "UnexpectedError"


async def _attempt(
    obj: Resource, patch: kopf.Patch, retry: int, memo: kopf.Memo, resync: bool, counted: _Counted
) -> None:
    """One reconcile attempt, reported in status and Events (Kopf retries what it raises)."""
    ctx: Context = memo["context"]
    adapter = ADAPTERS[obj.kind]
    try:
        outcome = await engine.reconcile(adapter, ctx, obj, _deadline(ctx), resync=resync)
    except ParentNotReady as error:
        counted.outcome = "ParentNotReady"
        # Normal waiting: the condition says what it waits for; INFO logs, no Event (nothing to act on),
        # and a quick look again (every attempt after the first waits for the parent's watch event itself).
        status.write(
            patch,
            obj,
            ready=(False, "ParentNotReady", str(error)),
            synced=(False, "ParentNotReady", str(error)),
        )
        raise kopf.TemporaryError(str(error), delay=PARENT_RETRY) from None
    except Invalid as error:
        counted.outcome = "CloudRejected"
        status.write(
            patch,
            obj,
            ready=(False, "CloudRejected", str(error)),
            synced=(False, "CloudRejected", str(error)),
        )
        post_event(obj, "Warning", "CloudRejected", str(error))
        raise kopf.PermanentError(f"the cloud rejected the spec: {error}") from None
    except (CloudError, LockTimeout, HoldLost, DeadlineExceeded, *KUBERNETES_TRANSIENT) as error:
        reason = counted.outcome = _transient_reason(error)
        if obj.reason("Synced") != reason:  # once per cause: a retry of the same problem stays quiet
            logger.warning("%s: %s", obj.ref, error)
            post_event(obj, "Warning", reason, str(error))
        status.write(patch, obj, ready=None, synced=(False, reason, str(error)))
        raise kopf.TemporaryError(str(error), delay=_backoff(ctx, retry)) from None
    except NoLongerOurs:
        raise  # a drift check that found the object going, or gone to another replica: nothing to report
    except Exception as error:
        # Not Kopf's silent default (a retry in 60 s): say what happened, and retry with the back-off.
        message = _unexpected(obj, error)
        status.write(patch, obj, ready=None, synced=(False, "UnexpectedError", message))
        raise kopf.TemporaryError(message, delay=_backoff(ctx, retry)) from None
    counted.outcome = "Ready" if outcome.ready else outcome.reason
    fresh: dict[str, Any] = {}
    status.write(
        fresh,
        obj,
        ready=(outcome.ready, outcome.reason, outcome.message),
        synced=(True, "Reconciled", "the last reconciliation succeeded"),
        fields=outcome.status,
    )
    if not resync or any(obj.status.get(key) != value for key, value in fresh["status"].items()):
        if resync and not await _still_ours(ctx, obj):
            counted.outcome = "NoLongerOurs"
            return  # the timer of a copy Kopf forgot: the owner reports on the object
        patch.update(fresh)  # a drift check that found all as it was writes nothing
    if outcome.reason == "Degraded" and obj.reason("Ready") != "Degraded":
        logger.warning("%s: %s", obj.ref, outcome.message)
        post_event(obj, "Warning", "Degraded", outcome.message)  # once: when it turns degraded
    if not outcome.ready:
        # Being built: look again soon. Degraded: it may stay so for hours; look again now and then.
        delay = DEGRADED_RECHECK if outcome.reason == "Degraded" else ctx.settings.ready_poll
        raise kopf.TemporaryError(outcome.message, delay=delay)


async def _still_ours(ctx: Context, obj: Resource) -> bool:
    """Whether a drift check may write status: the object, read again, is the one it checked and ours.

    Kopf keeps the timer of an object that left this replica's watch, with the
    body from before; its status (an old ``observedGeneration`` among it) must
    not overwrite what the owner wrote. When the read fails, it writes nothing
    this time.
    """
    try:
        async with asyncio.timeout(ctx.settings.cloud_request_timeout):
            now = await ctx.resources.get(obj.kind, obj.namespace, obj.name)
    except (*KUBERNETES_TRANSIENT, TimeoutError):
        return False
    return engine.why_not_ours(ctx, obj, now) is None


KUBERNETES_TRANSIENT = (ApiException, aiohttp.ClientError, ConnectionError)
"""A read of the API server inside an attempt failed (it restarts, is overloaded, or refused): retried."""


def _transient_reason(error: Exception) -> str:
    """The condition reason (and Event reason) of a transient failure."""
    if isinstance(error, KUBERNETES_TRANSIENT):
        return "KubernetesUnavailable"
    return type(error).__name__


def _unexpected(obj: Resource, error: Exception) -> str:
    """Log an error no handler expected (with its traceback), post it as an Event, and say it in one line."""
    message = f"unexpected {type(error).__name__}: {error}; retrying"
    logger.error("%s %s/%s: %s", obj.kind, obj.namespace, obj.name, message, exc_info=error)
    post_event(obj, "Warning", "UnexpectedError", message)
    return message


async def on_delete(body: Mapping[str, Any], retry: int, memo: kopf.Memo, **_: Any) -> None:
    """Delete the cloud object; one already gone is success, so the finalizer never hangs on it."""
    async with _owned(memo, body):
        await _delete(body, retry, memo)


async def _delete(body: Mapping[str, Any], retry: int, memo: kopf.Memo) -> None:
    ctx: Context = memo["context"]
    obj = Resource.from_body(body)
    try:
        await engine.delete(ADAPTERS[obj.kind], ctx, obj, _deadline(ctx))
    except (CloudError, LockTimeout, HoldLost, DeadlineExceeded) as error:
        if retry == 0:  # once per deletion: its retries say nothing new
            logger.warning("%s: deleting: %s", obj.ref, error)
            post_event(obj, "Warning", f"DeleteFailed{type(error).__name__}", str(error))
        raise kopf.TemporaryError(str(error), delay=_backoff(ctx, retry)) from None
    except Exception as error:
        raise kopf.TemporaryError(_unexpected(obj, error), delay=_backoff(ctx, retry)) from None
    await _discard_locks_of_gone_parents(ctx, obj)


async def _discard_locks_of_gone_parents(ctx: Context, obj: Resource) -> None:
    """Delete the lock Lease a deleted LoadBalancer or pool leaves behind, once it is gone from the cloud.

    A LoadBalancer's family Lease goes with the LoadBalancer object; a
    pool-scoped Lease with its pool. A child finishing later finds its cloud
    object gone with its parent and takes no lock; whatever this misses,
    the sweeper removes once idle.
    """
    if ctx.mutex is None:
        return
    uuid = obj.status.get("uuid")
    still_there: Callable[[str], Awaitable[object]]
    if obj.kind == "LoadBalancer":
        key, still_there = family_key(obj.namespace, obj.name), ctx.cloud.get_load_balancer
        if not uuid:
            await ctx.mutex.discard(key, _deadline(ctx))  # never made in the cloud; its creation was locked
            return
    elif obj.kind == "LoadBalancerPool" and uuid:
        key, still_there = f"pool/{uuid}", ctx.cloud.get_pool
    else:
        return
    deadline = _deadline(ctx)
    try:
        async with asyncio.timeout_at(deadline):
            await still_there(str(uuid))
    except NotFound:
        await ctx.mutex.discard(key, deadline)
    except (CloudError, TimeoutError):
        pass  # unknown: the sweeper removes an idle Lease later


async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.loggers = False  # Events are our own (kopf.event), one per cause; never log lines
    settings.peering.standalone = True  # active-active replicas: Kopf peering would freeze equal peers
    context: Context = memo.get("context") or await open_context(post_event)  # once, should Kopf retry
    memo["context"] = context
    if context.settings.metrics_port and "metrics" not in memo:
        address, port = context.settings.listen_address, context.settings.metrics_port
        try:
            memo["metrics"] = await metrics.serve(address, port)
        except OSError as error:  # e.g. the port is taken: say so and stop, rather than retry for ever
            problem = f"cannot serve metrics on {address}:{port} (LBOP_METRICS_PORT): {error}"
            raise kopf.PermanentError(problem) from None
    settings.queueing.exit_timeout = context.settings.shutdown_grace
    if context.settings.sharding and context.mutex is not None and context.api is not None:
        # Server-side: this replica's Kopf sees only the objects labelled for it.
        own = f"{SHARD_LABEL}={context.settings.identity}"
        settings.watching.label_selectors[GROUP, kopf.EVERYTHING] = own
        replica = Replica(
            context.api,
            context.mutex,
            context.settings.identity,
            context.settings.watch_namespaces,
            context.settings.nudge_interval,
            functools.partial(_leaving, context),
        )
        replica.start()
        memo["replica"] = replica


def _leaving(context: Context, body: Mapping[str, Any], going: bool) -> None:
    """A drained object whose handler still runs: if it waits for its parent, it stops waiting now."""
    obj = Resource.from_body(body)
    if not going:
        context.leaving.discard(obj.uid)
        return
    context.leaving.add(obj.uid)
    adapter = ADAPTERS.get(obj.kind)
    ref = adapter.parent_ref(obj) if adapter is not None else None
    if ref is not None:
        context.parents.wake(ref)


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    await _stop_orphaned_timers()
    replica: Replica | None = memo.get("replica")
    if replica is not None:
        await replica.stop()  # the member Lease last: survivors take over at once
    context = memo.get("context")
    if context is not None:
        await close_context(context)
    served: web.AppRunner | None = memo.get("metrics")
    if served is not None:
        await served.cleanup()


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def drift_check_due(body: Mapping[str, Any], shard: str | None) -> bool:
    """Whether the periodic drift check looks at this object now; ``shard``: this replica's, if sharded.

    Left alone: an object no handler has reported on at its generation yet, one
    its change handler is still working on (Kopf keeps that handler's progress
    in an annotation until it succeeds), one being deleted (its delete handler
    owns it), and one whose spec the cloud rejected (nothing changed that could
    fix it). With sharding, also one not labelled for this replica, or being
    drained away from it. Kopf sees an object leave the label-selected watch
    as DELETED and forgets it, but keeps its timer running with the last body
    it saw (the one before it left: still labelled for this replica when the
    sharder moved it without a drain, from a replica it took for dead). So a
    correction re-reads the object under the lock as well (``NoLongerOurs``).
    """
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    obj = Resource.from_body(body)
    if f"{GROUP}/reconcile" in annotations or obj.status.get("observedGeneration") != obj.generation:
        return False
    if obj.deleting or obj.reason("Ready") == "CloudRejected":
        return False
    if shard is not None:
        return obj.shard == shard and not refuses(body)
    return True


async def on_resync(body: Mapping[str, Any], patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    """The periodic drift check: the cloud is read again and set back to the spec if it drifted."""
    context: Context = memo["context"]
    if not drift_check_due(body, context.shard):
        return
    async with _owned(memo, body):
        try:
            await _reconcile(body, patch, int(kwargs.get("retry") or 0), memo, resync=True)
        except (NoLongerOurs, kopf.PermanentError):
            return  # a rejected spec is reported in status; a permanently failed timer would never run again


async def _stop_orphaned_timers() -> None:
    """Cancel the drift-check timers Kopf left running for objects it forgot (see ``drift_check_due``).

    Kopf stops at exit only the timers of objects it still remembers; it
    then waits 5 s for any other task before it cancels it, so each moved
    object's orphaned timer would hold up this replica's exit (and a rolling
    restart) by that much. At cleanup, Kopf has stopped every timer it knows,
    so any still running is such an orphan. Kopf names a timer's task
    ``runner of <handler id>``.
    """
    current = asyncio.current_task()
    orphans = [
        task
        for task in asyncio.all_tasks()
        if task is not current and task.get_name() == f"runner of {RESYNC_ID}" and not task.done()
    ]
    for task in orphans:
        task.cancel()
    if orphans:
        await asyncio.wait(orphans, timeout=1.0)
        logger.info("stopped %d drift-check timers of objects that moved to other replicas", len(orphans))


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


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Register every handler of every kind on ``registry``."""
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RetriesAreNotErrors) for f in objects_logger.filters):
        objects_logger.addFilter(RetriesAreNotErrors())

    def first_resync(**_: Any) -> float:
        """Each object's first drift check at a random point of the first interval: checks spread evenly."""
        return random.uniform(0, settings.resync_interval)

    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    for kind in ALL_KINDS:
        for event in (kopf.on.create, kopf.on.update, kopf.on.resume):
            event(GROUP, VERSION, kind.plural, registry=registry, id="reconcile")(on_change)
        kopf.on.delete(GROUP, VERSION, kind.plural, registry=registry, id="delete")(on_delete)
        kopf.timer(
            GROUP,
            VERSION,
            kind.plural,
            registry=registry,
            id=RESYNC_ID,
            interval=settings.resync_interval,
            initial_delay=first_resync,
        )(on_resync)
