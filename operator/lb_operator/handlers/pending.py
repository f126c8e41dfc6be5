"""A change outlives the handler attempt that asked for it: it keeps its place in its tree's queue.

The cloud applies one change per load balancer at a time, so the changes of
one tree queue on its lock (in this replica: the lock's local FIFO, the
lease passed from one to the next with no write). At a real cloud's pace a
change may queue for longer than a handler may wait: 36 changes of 2 s are
72 s, and the load balancer's build before them 30 s more. A handler that
gave up its place at its deadline would be retried at the back of the
queue, time out again, and write a failure each time.

So a handler starts its object's change as a task of its own (``Pending``)
and awaits it until its deadline (``handler_timeout``). If the change is not
done by then, the handler ends with a quiet retry and the change goes on in
its place; Kopf's retry awaits the same change, or takes its result if it
ended meanwhile. The change itself is bounded too: by ``QUEUE_PATIENCE``
handler deadlines in all, and, once it holds the lock, by one handler
deadline (``engine.reconcile``).

A change is withdrawn — cancelled, if it does not hold the lock yet — when
nobody wants it any more: its handler is cancelled (Kopf is stopping), the
object leaves this replica's watch or is drained away, its deletion begins,
a newer generation asks for a change of its own, or no handler came back
for it in ``abandoned_after``. One that holds the lock is left to end (it
proves ownership before it writes, so a change that is not wanted any more
writes nothing); at shutdown it gets ``shutdown_grace``, then it is
cancelled and what it sent is in doubt (found by its tag the next time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from lb_operator.handlers import metrics

logger = logging.getLogger(__name__)

QUEUE_PATIENCE = 10
"""A change may take this many handler deadlines (``handler_timeout``) in all, its waits included."""

WITHDRAWN_RETRY = 5.0
"""Seconds before Kopf retries a handler whose change was withdrawn while it awaited it: the object is
leaving this replica (drained, or gone from its watch), so the retry most likely never comes here."""

REATTACH_DELAY = 0.0
"""Seconds before Kopf retries a handler whose change is still under way: at once, as the watch event
of Kopf's own retry record arrives (it awaits the same change, which does not wait for it). Any delay
would cost a write more: Kopf wakes a delayed handler by writing a dummy annotation."""


async def end_within(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Give ``tasks`` ``grace`` seconds to end, then cancel those still running; return once all ended."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Change:
    uid: str
    generation: int | None
    task: asyncio.Task[None]
    holds_lock: bool = False
    withdrawn: str | None = None  # why, once withdrawn
    waiters: int = 0
    abandon: asyncio.TimerHandle | None = field(default=None, repr=False)


class Pending:
    """This replica's changes under way, one per object (by UID)."""

    def __init__(self, handler_timeout: float) -> None:
        self.handler_timeout = handler_timeout
        self.abandoned_after = 2 * handler_timeout + 10.0
        self._changes: dict[str, _Change] = {}

    def __len__(self) -> int:
        return len(self._changes)

    def patience(self) -> float:
        """The deadline (event-loop time) of a change starting now."""
        return asyncio.get_running_loop().time() + QUEUE_PATIENCE * self.handler_timeout

    async def await_change(
        self,
        body: Mapping[str, Any],
        until: float,
        start: Callable[[Callable[[], None]], Awaitable[None]],
    ) -> None:
        """Await the change of ``body``'s object at its generation until ``until``; start it if none is
        under way. ``start(locked)`` runs the change; it calls ``locked()`` once it holds the lock.

        Returns or raises what the change did (a Kopf retry or failure). At
        ``until``, raises a quiet ``kopf.TemporaryError``: the change goes on.
        """
        metadata = body["metadata"]
        uid, generation = str(metadata["uid"]), metadata.get("generation")
        change = self._changes.get(uid)
        if change is not None and change.generation != generation:
            self.withdraw(uid, "a newer generation asks for a change of its own")
            change = None
        if change is None:
            change = self._start(uid, generation, start)
        if change.abandon is not None:
            change.abandon.cancel()
            change.abandon = None
        change.waiters += 1
        loop = asyncio.get_running_loop()
        try:
            done, _ = await asyncio.wait({change.task}, timeout=max(0.0, until - loop.time()))
        except asyncio.CancelledError:
            # Kopf cancelled the handler (it is stopping): a change that has not begun is withdrawn.
            change.waiters -= 1
            if change.waiters == 0:
                self.withdraw(uid, "its handler was cancelled")
            raise
        change.waiters -= 1
        if not done:
            metrics.CHANGES_OUTLIVING.inc()
            if change.waiters == 0 and self._changes.get(uid) is change:
                change.abandon = loop.call_later(self.abandoned_after, self._abandoned, change)
            raise kopf.TemporaryError(
                "its change is still under way (queued behind other changes of its load balancer, or "
                "waiting for its parent); the handler looks again",
                delay=REATTACH_DELAY,
            )
        if self._changes.get(uid) is change:
            del self._changes[uid]
        if change.task.cancelled():  # withdrawn meanwhile: the object is leaving this replica
            why = change.withdrawn or "cancelled"
            raise kopf.TemporaryError(f"its change was withdrawn ({why})", delay=WITHDRAWN_RETRY)
        change.task.result()  # raises what the change raised

    def withdraw(self, uid: str, why: str) -> None:
        """Nobody wants the change of ``uid`` any more: cancel it if it does not hold the lock yet."""
        change = self._changes.pop(uid, None)
        if change is None:
            return
        if change.abandon is not None:
            change.abandon.cancel()
        change.withdrawn = why
        if not change.holds_lock and not change.task.done():
            logger.debug("withdrawing the change of %s: %s", uid, why)
            change.task.cancel()

    async def close(self, grace: float) -> None:
        """Withdraw every change; give those that hold a lock ``grace`` seconds to end, then cancel them."""
        changes = list(self._changes.values())
        for change in changes:
            self.withdraw(change.uid, "the operator is stopping")
        await end_within([c.task for c in changes if not c.task.done()], grace)

    def _start(
        self, uid: str, generation: int | None, start: Callable[[Callable[[], None]], Awaitable[None]]
    ) -> _Change:
        change: _Change | None = None

        def locked() -> None:
            assert change is not None
            change.holds_lock = True

        async def run() -> None:
            await start(locked)

        task = asyncio.create_task(run(), name=f"change {uid}")
        metrics.CHANGES_UNDER_WAY.inc()
        made = change = self._changes[uid] = _Change(uid, generation, task)
        task.add_done_callback(lambda _: self._ended(made))
        return change

    def _ended(self, change: _Change) -> None:
        """A change ended: keep its result for the handler's retry, at most ``abandoned_after``."""
        metrics.CHANGES_UNDER_WAY.dec()
        if not change.task.cancelled():
            change.task.exception()  # retrieved: a result nobody comes for is not an "unretrieved" error
        if self._changes.get(change.uid) is change and change.waiters == 0 and change.abandon is None:
            change.abandon = asyncio.get_running_loop().call_later(
                self.abandoned_after, self._abandoned, change
            )

    def _abandoned(self, change: _Change) -> None:
        if self._changes.get(change.uid) is change:
            self.withdraw(change.uid, f"no handler came back for it in {self.abandoned_after:g}s")
