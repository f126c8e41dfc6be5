"""Delete: remove the cloud object before Kopf lets the finalizer go, and the lock Lease it leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from lb_operator.cloud import CloudError, NotFound
from lb_operator.cloud.models import LoadBalancer, Pool
from lb_operator.handlers.changes import KUBERNETES_TRANSIENT, backoff, deadline
from lb_operator.handlers.events import post_event
from lb_operator.handlers.pending import Pending
from lb_operator.handlers.running import running
from lb_operator.mutex import HoldLost, LockTimeout
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import UID_TAG, Context, DeadlineExceeded, NoLongerOurs, family_key
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource

logger = logging.getLogger(__name__)

GONE_WAIT = 30.0
"""Seconds a deletion waits for its load balancer or pool to be gone from the cloud before it
discards the lock Lease; past that the Lease is left to the sweeper."""

MOVED_RETRY = 1.0
"""Seconds in the retry a deletion records when its object moved to another replica. Kopf keeps the
finalizer on a handler that raises; the new owner's Kopf reads this record and honours the delay."""


async def on_delete(body: Mapping[str, Any], retry: int, memo: kopf.Memo, **_: Any) -> None:
    """Delete the cloud object; one already gone is success, so the finalizer never hangs on it.

    A change of the object still queued is withdrawn first; one that holds
    the lock ends before this deletion gets it (if it has not proven
    ownership yet, its proof sees the deletion and it writes nothing)."""
    pending: Pending | None = memo.get("pending")
    if pending is not None:
        pending.withdraw(str(body["metadata"]["uid"]), "its deletion began")
    async with running(memo, body):
        await _delete(body, retry, memo)


async def _delete(body: Mapping[str, Any], retry: int, memo: kopf.Memo) -> None:
    ctx: Context = memo["context"]
    obj = Resource.from_body(body)
    try:
        await engine.delete(ADAPTERS[obj.kind], ctx, obj, deadline(ctx))
    except NoLongerOurs as error:
        if error.gone:
            return  # another replica finished the deletion meanwhile: Kopf's patch finds nothing
        # Moved to another replica, which deletes it (or made again under the same name). Returning would
        # let Kopf remove the finalizer here, by name and with no precondition, and the cloud object would
        # outlive it (or the new object lose its finalizer): raise, so the finalizer stays.
        logger.info("%s", error)
        raise kopf.TemporaryError(str(error), delay=MOVED_RETRY) from None
    except (CloudError, LockTimeout, HoldLost, DeadlineExceeded) as error:
        if retry == 0 and await _still_ours(ctx, obj):  # once per deletion, and only by its owner
            logger.warning("%s: deleting: %s", obj.ref, error)
            post_event(obj, "Warning", f"DeleteFailed{type(error).__name__}", str(error))
        raise kopf.TemporaryError(str(error), delay=backoff(ctx, retry)) from None
    except Exception as error:
        message = f"unexpected {type(error).__name__} while deleting: {error}; retrying"
        logger.error("%s: %s", obj.ref, message, exc_info=error)
        if await _still_ours(ctx, obj):
            post_event(obj, "Warning", "UnexpectedError", message)
        raise kopf.TemporaryError(message, delay=backoff(ctx, retry)) from None
    await _discard_locks_of_gone_parents(ctx, obj)


async def _still_ours(ctx: Context, obj: Resource) -> bool:
    """Whether a fresh read shows the object being deleted by this replica (else it posts nothing)."""
    try:
        await engine.prove(ctx, obj, deleting=True)
    except (NoLongerOurs, *KUBERNETES_TRANSIENT):
        return False
    return True


async def _discard_locks_of_gone_parents(ctx: Context, obj: Resource) -> None:
    """Delete the lock Lease a deleted LoadBalancer or pool leaves behind, once it is gone from the cloud
    (waited for up to ``GONE_WAIT``: Octavia answers a deletion at once and removes the object when
    its provider is done).

    A LoadBalancer's family Lease goes with the LoadBalancer object; a
    pool-scoped Lease with its pool. A child finishing later finds its cloud
    object gone with its parent and takes no lock; whatever this misses,
    the sweeper removes once idle.
    """
    if ctx.mutex is None:
        return
    uuid = obj.status.get("uuid")
    still_there: Callable[[str], Awaitable[LoadBalancer | Pool]]
    if obj.kind == "LoadBalancer":
        key, still_there = family_key(obj.uid), ctx.cloud.get_load_balancer
        if not uuid:
            await ctx.mutex.discard(key, deadline(ctx))  # never made in the cloud; its creation was locked
            return
        ctx.families.pop(str(uuid), None)
    elif obj.kind == "LoadBalancerPool" and uuid:
        key, still_there = f"pool/{uuid}", ctx.cloud.get_pool
    else:
        return
    try:
        async with asyncio.timeout(GONE_WAIT):
            while True:  # a cloud that deletes after answering (Octavia: PENDING_DELETE) still shows it
                found = await still_there(str(uuid))
                owner = found.tags.get(UID_TAG)  # untagged: ours, its tag removed in a console (as find)
                if owner is not None and owner != obj.uid:
                    # status.uuid names another object's (a restored copy's): the deletion left it
                    # alone. The family Lease is this object's own; a pool's Lease is its owner's.
                    if obj.kind == "LoadBalancer":
                        await ctx.mutex.discard(key, deadline(ctx))
                    return
                if isinstance(found, LoadBalancer) and found.status != "changing":
                    return  # not being deleted (its deletion failed in the cloud): the Lease stays
                await asyncio.sleep(ctx.settings.ready_poll)
    except NotFound:
        await ctx.mutex.discard(key, deadline(ctx))
    except (CloudError, TimeoutError):
        pass  # unknown: the sweeper removes an idle Lease later
