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
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.cloud import Busy, CloudError, Invalid, NotFound
from lb_operator.handlers import status
from lb_operator.handlers.runtime import close_context, open_context
from lb_operator.mutex import HoldLost, LockTimeout
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import Context, ParentNotReady, family_key
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource
from lb_operator.sharding import SHARD_LABEL
from lb_operator.sharding.drain import refuses
from lb_operator.sharding.replica import Replica

logger = logging.getLogger(__name__)


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


async def _reconcile(body: Mapping[str, Any], patch: kopf.Patch, retry: int, memo: kopf.Memo) -> None:
    ctx: Context = memo["context"]
    obj = Resource.from_body(body)
    adapter = ADAPTERS[obj.kind]
    try:
        outcome = await engine.reconcile(adapter, ctx, obj, _deadline(ctx))
    except ParentNotReady as error:
        status.write(
            patch,
            obj,
            ready=(False, "ParentNotReady", str(error)),
            synced=(False, "ParentNotReady", str(error)),
        )
        raise kopf.TemporaryError(str(error), delay=_backoff(ctx, retry)) from None
    except Invalid as error:
        status.write(
            patch,
            obj,
            ready=(False, "CloudRejected", str(error)),
            synced=(False, "CloudRejected", str(error)),
        )
        post_event(obj, "Warning", "CloudRejected", str(error))
        raise kopf.PermanentError(f"the cloud rejected the spec: {error}") from None
    except (Busy, LockTimeout, HoldLost, CloudError) as error:
        reason = type(error).__name__
        status.write(patch, obj, ready=None, synced=(False, reason, str(error)))
        post_event(obj, "Warning", reason, str(error))
        raise kopf.TemporaryError(str(error), delay=_backoff(ctx, retry)) from None
    except Exception as error:
        # Not Kopf's silent default (a retry in 60 s): say what happened, and retry with the back-off.
        message = _unexpected(obj, error)
        status.write(patch, obj, ready=None, synced=(False, "UnexpectedError", message))
        raise kopf.TemporaryError(message, delay=_backoff(ctx, retry)) from None
    status.write(
        patch,
        obj,
        ready=(outcome.ready, outcome.reason, outcome.message),
        synced=(True, "Reconciled", "the last reconciliation succeeded"),
        fields=outcome.status,
    )
    if not outcome.ready:
        raise kopf.TemporaryError(outcome.message, delay=ctx.settings.ready_poll)


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
    except (CloudError, LockTimeout, HoldLost) as error:
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
    try:
        await still_there(str(uuid))
    except NotFound:
        await ctx.mutex.discard(key, _deadline(ctx))
    except CloudError:
        pass  # unknown: the sweeper removes an idle Lease later


async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING  # our own Events say what matters; Kopf's info lines would flood
    settings.peering.standalone = True  # active-active replicas: Kopf peering would freeze equal peers
    context = await open_context(post_event)
    memo["context"] = context
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
        )
        replica.start()
        memo["replica"] = replica


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    replica: Replica | None = memo.get("replica")
    if replica is not None:
        await replica.stop()  # the member Lease last: survivors take over at once
    context = memo.get("context")
    if context is not None:
        await close_context(context)


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every handler of every kind on ``registry``."""
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    for kind in ALL_KINDS:
        for event in (kopf.on.create, kopf.on.update, kopf.on.resume):
            event(GROUP, VERSION, kind.plural, registry=registry, id="reconcile")(on_change)
        kopf.on.delete(GROUP, VERSION, kind.plural, registry=registry, id="delete")(on_delete)
