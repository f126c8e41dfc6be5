"""The periodic drift check: the cloud is read again and set back to the spec if it drifted.

One sweep per replica (``DriftSweep``), not a Kopf daemon per object: it
goes over the objects of this replica's view (``Mirror``, one watch per
kind) every ``TICK`` and checks each object at rest once per
``LBOP_RESYNC_INTERVAL`` — the first time after a random part of it, so
that checks spread evenly. The checks of a replica share one list of the
cloud per kind and interval (``reconcile.snapshot``): an object listed in
sync costs no request. A failed check is retried sooner, by the sweep (Kopf
retries only its change handlers).

Why not a daemon per object: at 10,000 objects that is 10,000 tasks, each
with Kopf's bookkeeping, for a check that runs once in five minutes; and
Kopf keeps a daemon of an object that left the label-selected watch running
with the body from before. The sweep reads the view afresh every time: an
object that moved away, is being deleted, or is not at rest is not checked,
and a check that runs anyway (before its view showed the move) writes
nothing: its writes prove ownership first.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from lb_operator.handlers.pending import Pending, end_within
from lb_operator.reconcile.resources import Resource
from lb_operator.sharding.drain import refuses
from lb_operator.sharding.streams import Mirror

logger = logging.getLogger(__name__)

AT_REST = frozenset({("Ready", "True"), ("Synced", "True")})
WAITS_FOR_A_PERSON = frozenset({"CloudRejected", "Conflict"})

TICK = 1.0
"""Seconds between two looks of the sweep at its view: a check is due at most this late."""

CHECKS_AT_ONCE = 16
"""Drift checks of one replica under way at once (most cost nothing: the shared list shows them in sync)."""


async def on_event(type: str | None, body: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of every object: a DELETED one (the object is gone, or left this replica's
    watch) withdraws its change if it has not begun (``handlers.pending``). The first one starts the
    drift sweep: from inside Kopf's handling of an object, whose context lets it post Events (Kopf's
    poster is reachable only from there, not from a start-up handler)."""
    sweep: DriftSweep | None = memo.get("drift")
    if sweep is not None:
        sweep.start()
    if type == "DELETED":
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


Check = Callable[[Mapping[str, Any], int], Awaitable[None]]
"""Runs one drift check of an object (its body, the retries so far); raises as a handler would."""


@dataclass
class _Due:
    at: float
    retries: int = 0


class DriftSweep:
    """Checks every object of this replica at rest once per ``interval``, ``CHECKS_AT_ONCE`` at a time.

    ``busy(uid)``: whether a handler of this replica works on the object now (then the check waits for
    the next interval). ``stop_grace``: seconds the checks under way get to end when the sweep is
    stopped, before they are cancelled (a check cut off mid-change leaves that change in doubt: the
    next reconcile finds what it did by its tag).
    """

    def __init__(
        self,
        mirror: Mirror,
        interval: float,
        shard: str | None,
        check: Check,
        busy: Callable[[str], bool] = lambda uid: False,
        stop_grace: float = 2.0,
    ) -> None:
        self._stop_grace = stop_grace
        self._mirror = mirror
        self._interval = interval
        self._shard = shard
        self._check = check
        self._busy = busy
        self._due: dict[str, _Due] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(CHECKS_AT_ONCE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping (once); the task inherits the caller's context."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="drift sweep")

    async def stop(self) -> None:
        """Stop sweeping; the checks under way get ``stop_grace``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        """Sweep until cancelled; then give the checks under way ``stop_grace`` to end."""
        try:
            while True:
                self.sweep()
                await asyncio.sleep(TICK)
        finally:
            await self._stop()

    def sweep(self) -> None:
        """One look at the view: start the checks that are due."""
        now = asyncio.get_running_loop().time()
        seen = set()
        for body in self._mirror.bodies():
            uid = str(body["metadata"]["uid"])
            seen.add(uid)
            due = self._due.get(uid)
            if due is None:  # new here: its first check at a random point of the interval
                self._due[uid] = _Due(now + random.uniform(0, self._interval))
                continue
            if due.at > now or uid in self._running:
                continue
            if not drift_check_due(body, self._shard, retrying=due.retries > 0) or self._busy(uid):
                self._due[uid] = _Due(now + self._interval)
                continue
            due.at = now + self._interval
            self._start(uid, body, due)
        for uid in [uid for uid in self._due if uid not in seen]:
            del self._due[uid]  # gone from the view: deleted, or (without sharding) never ours

    def _start(self, uid: str, body: Mapping[str, Any], due: _Due) -> None:
        task = asyncio.create_task(self._run_check(uid, body, due), name=f"drift check {uid}")
        self._running[uid] = task
        task.add_done_callback(lambda _: self._running.pop(uid, None))

    async def _run_check(self, uid: str, body: Mapping[str, Any], due: _Due) -> None:
        async with self._slots:
            try:
                await self._check(body, due.retries)
                due.retries = 0
            except kopf.TemporaryError as failed:  # reported in status; retried sooner, as Kopf would
                due.retries += 1
                delay = max(TICK, float(failed.delay or 0))
                due.at = asyncio.get_running_loop().time() + min(delay, self._interval)
            except kopf.PermanentError:
                due.retries = 0  # reported in status; a person changes the spec, and its handler takes over
            except Exception:
                logger.exception("the drift check of %s failed unexpectedly; again next interval", uid)
                due.retries = 0

    async def _stop(self) -> None:
        await end_within(list(self._running.values()), self._stop_grace)
