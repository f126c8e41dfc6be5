"""The periodic drift check: the cloud is read again and set back to the spec if it drifted.

One Kopf daemon per object, looping: rest for ``LBOP_RESYNC_INTERVAL`` (the
first time a random part of it, so that checks spread evenly), check, rest.

Why a daemon and not a Kopf timer: Kopf sees an object leave this replica's
label-selected watch as DELETED and forgets it, but keeps its timers running
with the body it last saw — and that body (the DELETED event carries the
object as it was *before* the change) still says the object is this
replica's. Such an orphaned timer would check, report and retry on an
object another replica owns, for the life of the process, and hold up its
exit. Here the DELETED event marks the object's memo as departed
(``on_event``), which ends its daemon at once. A check that runs anyway
(before the event arrives) writes nothing: its writes prove ownership first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping
from typing import Any

import kopf

from lb_operator.handlers.changes import reconcile
from lb_operator.handlers.pending import Pending
from lb_operator.handlers.running import busy, running
from lb_operator.reconcile.engine import Context
from lb_operator.reconcile.resources import Resource
from lb_operator.sharding.drain import refuses

DEPARTED = "departed"
"""Key in an object's Kopf memo: an ``asyncio.Event`` set when the object left this replica's watch."""

AT_REST = frozenset({("Ready", "True"), ("Synced", "True")})
WAITS_FOR_A_PERSON = frozenset({"CloudRejected", "Conflict"})


def departure(memo: kopf.Memo) -> asyncio.Event:
    """The event set when this object leaves this replica (its memo is the object's own)."""
    event = memo.get(DEPARTED)
    if event is None:
        event = memo[DEPARTED] = asyncio.Event()
    assert isinstance(event, asyncio.Event)
    return event


async def on_event(type: str | None, body: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of every object: a DELETED one (the object is gone, or left this replica's
    watch) ends the object's drift daemon here, and withdraws its change if it has not begun."""
    if type == "DELETED":
        departure(memo).set()
        pending: Pending | None = memo.get("pending")
        if pending is not None:
            pending.withdraw(str(body["metadata"]["uid"]), "it left this replica's watch")


def drift_check_due(body: Mapping[str, Any], shard: str | None, *, retrying: bool = False) -> bool:
    """Whether the drift check looks at this object now; ``shard``: this replica's, if sharded.

    Only objects at rest: Ready and Synced at their current generation —
    unless ``retrying`` a check of its own that failed (it then owns the
    retry, as Kopf owns a change handler's). An object not handled at its
    generation yet, or whose change handler's last attempt failed, is that
    handler's (retried by Kopf; brought back by the nudger if its retry was
    lost); one being deleted is its delete handler's; one whose spec the
    cloud rejected, or that names another object's cloud object, waits for
    a person. Kopf's own progress annotation is not consulted: a replica
    that lost the object may have written it late, and it would keep the
    check off for good. With sharding, also an object not labelled for this
    replica, or being drained.
    """
    obj = Resource.from_body(body)
    if obj.deleting or obj.status.get("observedGeneration") != obj.generation:
        return False
    if obj.reason("Ready") in WAITS_FOR_A_PERSON:
        return False
    conditions = obj.status.get("conditions") or []
    at_rest = {(c.get("type"), c.get("status")) for c in conditions} >= AT_REST and all(
        c.get("observedGeneration") == obj.generation for c in conditions
    )
    if not at_rest and not retrying:
        return False
    if shard is not None:
        return obj.shard == shard and not refuses(body)
    return True


async def _rest(seconds: float, stopped: kopf.DaemonStopped, departed: asyncio.Event) -> bool:
    """Sleep ``seconds``; ``True`` (stop checking) as soon as Kopf stops the daemon or the object departs."""
    waits = [asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(departed.wait())]
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        for wait in waits:
            with contextlib.suppress(asyncio.CancelledError):
                await wait
    return bool(done) or departed.is_set()


async def on_drift(body: Mapping[str, Any], memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Check the object every interval while it stays on this replica; a failed check is retried sooner."""
    ctx: Context = memo["context"]
    departed = departure(memo)
    pause = random.uniform(0, ctx.settings.resync_interval)
    retries = 0
    while not await _rest(pause, stopped, departed):
        pause = ctx.settings.resync_interval
        due = drift_check_due(body, ctx.shard, retrying=retries > 0)
        if not due or busy(memo, str(body["metadata"]["uid"])):
            retries = 0
            continue
        try:
            async with running(memo, body):
                await reconcile(body, retries, memo, resync=True)
            retries = 0
        except kopf.TemporaryError as failed:  # reported in status; this daemon retries it, as Kopf would
            retries += 1
            pause = min(float(failed.delay or ctx.settings.retry_delay), ctx.settings.resync_interval)
        except kopf.PermanentError:
            retries = 0  # reported in status; a person changes the spec, and its handler takes over
