"""Create, update, resume — and the drift check — as one reconcile, its outcome reported in status.

Deadlines: Kopf never cancels a running handler by itself, so each handler
attempt carries its own deadline (``handler_timeout``). The change it asks
for runs as a task of its own (``handlers.pending``): past the handler's
deadline the change keeps its place in its tree's queue and the handler
ends with a quiet retry that awaits the same change. The change is bounded
by ``QUEUE_PATIENCE`` handler deadlines in all (waits included); past that
it ends with ``LockTimeout`` or ``DeadlineExceeded``, reported, and Kopf
retries later with back-off; nothing is failed for good by a slow lock.

Reporting: status is written fenced (``status.publish``), and an Event is
posted only once the status write has shown that this replica still owns
the object: a replica that lost it says nothing on it, not even that it
failed. ``NoLongerOurs`` ends an attempt quietly, with success, so that
Kopf asks for nothing more; the owner (or the handler of the newer
generation) does the work.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.cloud import CloudError, Invalid
from lb_operator.handlers import metrics, status
from lb_operator.handlers.events import post_event
from lb_operator.handlers.pending import Pending
from lb_operator.handlers.running import DRAINED_RETRY, drained, running
from lb_operator.mutex import HoldLost, LockTimeout
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import (
    PARENT_WAIT,
    Context,
    DeadlineExceeded,
    ForeignCloudObject,
    NoLongerOurs,
    ParentNotReady,
)
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource, VersionConflict
from lb_operator.sharding.drain import refuses

logger = logging.getLogger(__name__)

DEGRADED_RECHECK = 30.0
"""Seconds between looks at a load balancer the cloud reports `degraded` or `error`."""

PARENT_RETRY = 0.2
"""Seconds before a child waiting for its parent looks again. Short: each attempt waits on the parent's
watch itself (woken at once when it changes), so this only bridges the gap between attempts. A parent
named by cloud UUID has no watch: its children back off (``LBOP_RETRY_DELAY`` doubling)."""

KUBERNETES_TRANSIENT = (ApiException, aiohttp.ClientError, ConnectionError, VersionConflict)
"""A read or write of the API server inside an attempt failed (it restarts, is overloaded, refused, or
the object kept changing under the status write): retried."""


def backoff(ctx: Context, retry: int) -> float:
    return float(min(ctx.settings.retry_delay * 2 ** min(retry, 10), ctx.settings.retry_delay_max))


def deadline(ctx: Context) -> float:
    return asyncio.get_running_loop().time() + ctx.settings.handler_timeout


async def on_change(body: Mapping[str, Any], retry: int, memo: kopf.Memo, **_: Any) -> None:
    """Create, update, resume: make the cloud match the spec, then report it in status.

    The change runs as a task of its own (``handlers.pending``): past this
    attempt's deadline it keeps its place in its tree's queue, and Kopf's
    retry awaits it again.
    """
    ctx: Context = memo["context"]
    pending: Pending | None = memo.get("pending")
    if pending is not None and (refuses(body) or drained(memo, body)):  # no change starts here
        raise kopf.TemporaryError("moving to another replica; it will continue there", delay=DRAINED_RETRY)
    if pending is None:  # run without start-up (unit tests): the change is the attempt
        async with running(memo, body):
            await reconcile(body, retry, memo)
        return

    async def change(locked: Callable[[], None]) -> None:
        async with running(memo, body):
            await reconcile(body, retry, memo, until=pending.patience(), locked=locked)

    await pending.await_change(body, deadline(ctx), change)


@dataclass
class _Counted:
    """The outcome label of one attempt in ``lbop_reconciles_total``, set where the attempt ends."""

    outcome: str = "UnexpectedError"


async def reconcile(
    body: Mapping[str, Any],
    retry: int,
    memo: kopf.Memo,
    *,
    resync: bool = False,
    until: float | None = None,
    locked: Callable[[], None] | None = None,
) -> None:
    """One reconcile attempt of the object in ``body``, reported; Kopf retries what it raises.

    ``until``: its deadline (default: one ``handler_timeout`` from now); a
    change that may queue for longer waits for its parent until then too.
    ``locked``: see ``engine.reconcile``.
    """
    obj = Resource.from_body(body)
    counted = _Counted()
    try:
        await _attempt(obj, retry, memo, resync, counted, until, locked)
    except asyncio.CancelledError:
        counted.outcome = "Cancelled"  # Kopf's shutdown cancelled it
        raise
    finally:
        trigger = "resync" if resync else "change"
        metrics.RECONCILES.labels(kind=obj.kind, trigger=trigger, outcome=counted.outcome).inc()


async def _attempt(
    obj: Resource,
    retry: int,
    memo: kopf.Memo,
    resync: bool,
    counted: _Counted,
    until: float | None,
    locked: Callable[[], None] | None,
) -> None:
    ctx: Context = memo["context"]
    latest = obj  # the object as this attempt last wrote it: what its next status write is fenced on

    async def waiting(error: ParentNotReady) -> None:
        # Normal waiting, said in status while the attempt waits on: INFO logs, no Event. NoLongerOurs
        # (the write showed the object is not ours) ends the attempt.
        nonlocal latest
        problem = (False, "ParentNotReady", str(error))
        try:
            latest = await status.publish(
                ctx, obj, status.stanza(latest, ready=problem, synced=problem), latest
            )
        except (*KUBERNETES_TRANSIENT, TimeoutError) as failure:  # TimeoutError: the request's own bound
            logger.info(
                "%s: status not written (%s); waiting on", obj.ref, str(failure) or type(failure).__name__
            )

    try:
        outcome = await engine.reconcile(
            ADAPTERS[obj.kind],
            ctx,
            obj,
            deadline(ctx) if until is None else until,
            resync=resync,
            waiting=None if resync else waiting,
            parent_wait=PARENT_WAIT if until is None else math.inf,
            locked=locked,
        )
    except NoLongerOurs as error:
        counted.outcome = "NoLongerOurs"
        logger.info("%s", error)
        return
    except ParentNotReady as error:
        counted.outcome = "ParentNotReady"
        # Normal waiting: the condition says what it waits for; INFO logs, no Event (nothing to act on).
        problem = (False, "ParentNotReady", str(error))
        if await _report(ctx, latest, ready=problem, synced=problem) is not Reported.NOT_OURS:
            delay = PARENT_RETRY if error.watched else backoff(ctx, retry)
            raise kopf.TemporaryError(str(error), delay=delay) from None
        return
    except ForeignCloudObject as error:
        counted.outcome = "Conflict"
        problem = (False, "Conflict", str(error))
        event = None if latest.reason("Ready") == "Conflict" else ("Warning", "Conflict")
        if await _report(ctx, latest, ready=problem, synced=problem, event=event) is not Reported.NOT_OURS:
            if event is not None:
                logger.warning("%s: %s", obj.ref, error)
            raise kopf.TemporaryError(str(error), delay=ctx.settings.retry_delay_max) from None
        return
    except Invalid as error:
        counted.outcome = "CloudRejected"
        problem = (False, "CloudRejected", str(error))
        reported = await _report(
            ctx, latest, ready=problem, synced=problem, event=("Warning", "CloudRejected")
        )
        if reported is Reported.UNWRITTEN:  # the rejection must reach the status: look again
            raise kopf.TemporaryError(str(error), delay=backoff(ctx, retry)) from None
        if reported is Reported.WRITTEN:
            raise kopf.PermanentError(f"the cloud rejected the spec: {error}") from None
        return
    except (CloudError, LockTimeout, HoldLost, DeadlineExceeded, *KUBERNETES_TRANSIENT) as error:
        reason = counted.outcome = transient_reason(error)
        # Once per cause: a retry of the same problem stays quiet.
        repeated = latest.reason("Synced") == reason
        event = None if repeated else ("Warning", reason)
        reported = await _report(ctx, latest, ready=None, synced=(False, reason, str(error)), event=event)
        if reported is not Reported.NOT_OURS:
            if not repeated:
                logger.warning("%s: %s", obj.ref, error)
            raise kopf.TemporaryError(str(error), delay=backoff(ctx, retry)) from None
        return
    except Exception as error:
        # Not Kopf's silent default (a retry in 60 s): say what happened, and retry with the back-off.
        message = f"unexpected {type(error).__name__}: {error}; retrying"
        logger.error("%s: %s", obj.ref, message, exc_info=error)
        synced = (False, "UnexpectedError", message)
        reported = await _report(ctx, latest, ready=None, synced=synced, event=("Warning", "UnexpectedError"))
        if reported is not Reported.NOT_OURS:
            raise kopf.TemporaryError(message, delay=backoff(ctx, retry)) from None
        return
    counted.outcome = "Ready" if outcome.ready else outcome.reason
    degraded = outcome.reason == "Degraded" and latest.reason("Ready") != "Degraded"  # once: when it turns so
    reported = await _report(
        ctx,
        latest,
        ready=(outcome.ready, outcome.reason, outcome.message),
        synced=(True, "Reconciled", "the last reconciliation succeeded"),
        fields=outcome.status,
        basis=outcome.basis,
        event=("Warning", "Degraded") if degraded else None,
        message=outcome.message,
    )
    if reported is Reported.NOT_OURS:
        counted.outcome = "NoLongerOurs"
        return
    if reported is Reported.UNWRITTEN:
        # The cloud is right, but the status does not say so: nothing would ever look again (not at
        # rest for the drift check, handled at its generation for the nudger). Retry the attempt.
        counted.outcome = "KubernetesUnavailable"
        raise kopf.TemporaryError("the status could not be written; retrying", delay=backoff(ctx, retry))
    if degraded:
        logger.warning("%s: %s", obj.ref, outcome.message)
    if not outcome.ready:
        # Being built: look again soon. Degraded: it may stay so for hours; look again now and then.
        delay = DEGRADED_RECHECK if outcome.reason == "Degraded" else ctx.settings.ready_poll
        raise kopf.TemporaryError(outcome.message, delay=delay)


class Reported(enum.Enum):
    """How reporting an attempt went."""

    WRITTEN = "written"  # the status is as wanted (written, or proven unchanged); the Event was posted
    NOT_OURS = "not ours"  # the object is not this replica's (any more): nothing was written or posted
    UNWRITTEN = "unwritten"  # the API server could not take the status now: retry the attempt


async def _report(
    ctx: Context,
    obj: Resource,
    *,
    ready: tuple[bool, str, str] | None,
    synced: tuple[bool, str, str],
    fields: Mapping[str, Any] | None = None,
    basis: Resource | None = None,
    event: tuple[str, str] | None = None,
    message: str | None = None,
) -> Reported:
    """Write the status (fenced), then post ``event`` — only once the write (or a fresh read) proved
    that the object is this replica's at this generation."""
    written = status.stanza(obj, ready=ready, synced=synced, fields=fields)
    try:
        await status.publish(ctx, obj, written, basis or obj, prove_if_unchanged=event is not None)
    except NoLongerOurs as error:
        logger.info("%s", error)
        return Reported.NOT_OURS
    except KUBERNETES_TRANSIENT as error:
        logger.info("%s: status not written (%s); the attempt is retried", obj.ref, error)
        return Reported.UNWRITTEN
    if event is not None:
        post_event(obj, event[0], event[1], message or synced[2])
    return Reported.WRITTEN


def transient_reason(error: Exception) -> str:
    """The condition reason (and Event reason) of a transient failure."""
    if isinstance(error, KUBERNETES_TRANSIENT):
        return "KubernetesUnavailable"
    return type(error).__name__
