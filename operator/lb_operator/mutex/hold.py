"""One acquired lock: its fencing token, its renewer, its check, and its release.

The renewer and the guarded code live in one place so that a lapsed hold
stops the guarded code: when renewals fail past the renew deadline, or the
watch shows another holder, the task that took the hold is cancelled and
``check()`` raises, so the guarded code does not outlive its lease.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lb_operator.mutex import metrics
from lb_operator.mutex.errors import HoldLost, HoldReleased
from lb_operator.mutex.leases import Conflict, Missing, Unavailable
from lb_operator.mutex.records import LeaseRecord, key_kind, micro_time

if TYPE_CHECKING:
    from lb_operator.mutex.lease_mutex import LeaseMutex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Passed:
    """A lease one task of this process passed to the next waiting one, unreleased (``pass_within``)."""

    obj: dict[str, Any]  # the newest version of the lease we know
    renewed_at: float  # when its last successful write was sent (loop time)
    taken_at: float  # when this process took it from the API server (loop time)
    passes: int  # how many times it has been passed since


class Hold:
    """The caller's proof of holding lock ``key``; leave its ``async with`` block to release it.

    ``fencing_token`` is the resourceVersion of the write that acquired the
    lease: resource versions are comparable integers (Kubernetes ≥ 1.35), so
    tokens strictly increase per key across every holder ever — also across
    a Lease the sweeper deleted and a later holder re-created, where
    ``leaseTransitions`` would start again. A hold passed from one task of
    this process to the next (``MutexSettings.pass_within``) was not written
    for: it keeps the token of the lease's newest version, so tokens order
    the processes that held a key; within one process, ``(fencing_token,
    passes)`` orders the tasks.

    States: *held* → *lost* (renewals failed past the renew deadline, or the
    lease was taken or deleted) and/or *released* (the block exited). Only
    *held* lets ``check()`` pass.
    """

    def __init__(
        self,
        mutex: LeaseMutex,
        key: str,
        obj: dict[str, Any],
        sent_at: float,
        on_done: Callable[[], None],
        *,
        taken_at: float | None = None,
        passes: int = 0,
    ) -> None:
        """``sent_at``: when the lease's last write was sent; ``taken_at``, ``passes``: see ``Passed``."""
        record = LeaseRecord.from_object(obj)
        self.key = key
        self.lease_name = record.name
        self.fencing_token = record.version
        self.transitions = record.transitions
        self.passes = passes
        self._mutex = mutex
        self._settings = mutex.settings
        self._kind = key_kind(key)
        self._object = obj  # the newest version of our lease we know: each renewal carries it
        self._renewed_at = sent_at  # when the last successful write was *sent*: the conservative bound
        self._loop = asyncio.get_running_loop()
        self._acquired_at = sent_at if taken_at is None else self._loop.time()
        self._taken_at = sent_at if taken_at is None else taken_at
        self._retry = self._settings.retry_initial
        self._task = asyncio.current_task()
        self._lost: str | None = None
        self._cancelled_task = False
        self._released = False
        self.ended_cleanly = False  # the guarded section ended without an exception (``async with``)
        self._on_done = on_done
        self._renewer = asyncio.create_task(self._renew_loop(), name=f"renew {self.lease_name}")

    def __repr__(self) -> str:
        state = "lost" if self._lost else "released" if self._released else "held"
        return f"<Hold {self.key!r} token={self.fencing_token} {state}>"

    def __bool__(self) -> bool:
        # `if held:` would read as "still valid", which it cannot promise: make the question explicit.
        raise TypeError("a Hold has no truth value: call check() (raises HoldLost) or read .lost")

    @property
    def lost(self) -> bool:
        """True once the hold guards nothing: it may have lapsed (also judged by clock), or was released."""
        self._judge_by_clock()
        return self._lost is not None or self._released

    def check(self) -> None:
        """Raise ``HoldLost`` if the hold may have lapsed; call it before each guarded write.

        After the ``async with`` block has exited it raises ``HoldReleased``
        (or ``HoldLost``, if the hold was lost first): work done there is not
        guarded, and must not look as if it were.
        """
        self._judge_by_clock()
        if self._lost is not None:
            raise HoldLost(self.key, self._lost)
        if self._released:
            raise HoldReleased(self.key)

    def _judge_by_clock(self) -> None:
        # A process that was paused (SIGSTOP, a long GC, a blocked loop) learns
        # here, before its renewer gets to run, that its lease may be gone.
        silent = self._loop.time() - self._renewed_at
        if self._lost is None and not self._released and silent > self._settings.renew_deadline:
            self._lose(f"not renewed for {silent:.1f}s (renew deadline {self._settings.renew_deadline}s)")

    def _lose(self, reason: str) -> None:
        if self._lost is not None or self._released:
            return
        self._lost = reason
        metrics.LOST_HOLDS.labels(kind=self._kind).inc()
        logger.warning("lost hold on %s (%s): %s", self.key, self.lease_name, reason)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            self._cancelled_task = True
            task.cancel(f"hold on {self.key!r} lost: {reason}")

    # -- the renewer: watch until due, renew, repeat; each step says whether the hold still stands --

    async def _renew_loop(self) -> None:
        due = self._renewed_at + self._settings.renew_interval
        while await self._watch_until(due):
            due = await self._renew()

    async def _watch_until(self, due: float) -> bool:
        """Follow our lease in the watch until a renewal is ``due`` (loop time); False once lost.

        Every pass awaits (``wait_for_newer`` never returns at once without
        news), so a holder never spins the event loop, whatever the cache holds.
        """
        watch = self._mutex.watch
        while True:
            self._judge_by_clock()
            if self._lost is not None:
                return False
            if self._loop.time() >= due:
                return True
            version = self._object["metadata"]["resourceVersion"]
            await watch.wait_for_newer(
                self.lease_name, version, min(due, self._renewed_at + self._settings.renew_deadline)
            )
            seen = watch.get(self.lease_name)
            if seen is not None and seen.record.is_newer_than(LeaseRecord.from_object(self._object)):
                self._adopt(seen.record)

    def _adopt(self, record: LeaseRecord) -> None:
        """A newer version of our lease: carry it if it is still ours, else the hold is lost."""
        if record.holder == self._mutex.identity and record.transitions == self.transitions:
            self._object = record.raw
        else:
            self._lose(f"lease taken by {record.holder or 'nobody (released by another)'}")

    async def _renew(self) -> float:
        """One renewal; returns when the next one is due (loop time)."""
        body = copy.deepcopy(self._object)
        body["spec"]["renewTime"] = micro_time()
        sent = self._loop.time()
        budget = self._renewed_at + self._settings.renew_deadline - sent
        try:
            written = await self._mutex.api.replace(body, self._kind, budget=budget)
        except Conflict:
            return await self._after_conflict()
        except Missing:
            self._lose("lease was deleted")
            return sent
        except Unavailable as error:
            logger.info("renewing %s failed (%s); retrying", self.lease_name, error)
            return self._retry_later()
        self._object = written
        self._renewed_at = sent
        self._retry = self._settings.retry_initial
        self._mutex.watch.wrote(written, sent)
        return sent + self._settings.renew_interval

    async def _after_conflict(self) -> float:
        """After a 409: re-read; still ours → renew at once with the newer version; else lost."""
        try:
            current = await self._mutex.api.get(self.lease_name, self._kind)
        except Missing:
            self._lose("lease was deleted")
            return self._loop.time()
        except Unavailable:
            return self._retry_later()  # unknown: the renew deadline decides
        self._adopt(self._mutex.watch.observe(current).record)
        return self._loop.time()

    def _retry_later(self) -> float:
        due = self._loop.time() + self._retry
        self._retry = min(self._retry * 2, self._settings.renew_interval / 2)
        return due

    # -- release ----------------------------------------------------------------------------------

    async def release(self) -> None:
        """Stop renewing and clear the holder; idempotent, and finishes even if the caller is cancelled."""
        if self._released:
            return
        self._released = True
        task = asyncio.create_task(self._release(), name=f"release {self.lease_name}")
        await asyncio.shield(task)

    def passed(self) -> Passed | None:
        """What the next local task may hold without a write, if this hold may be passed on; else None.

        Only a hold that is not lost, whose renewal is not overdue (its
        successor renews it in time), and whose lease this process took less
        than ``pass_within`` ago.
        """
        now = self._loop.time()
        if (
            self._lost is not None
            or now - self._taken_at >= self._settings.pass_within
            or now - self._renewed_at >= self._settings.renew_interval
        ):
            return None
        return Passed(self._object, self._renewed_at, self._taken_at, self.passes + 1)

    async def _release(self) -> None:
        try:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            if self._lost is None and not self._mutex.pass_on(self):
                await self._mutex.clear_holder(self.key, self._object, self.transitions)
        finally:
            metrics.HOLD_SECONDS.labels(kind=self._kind).observe(self._loop.time() - self._acquired_at)
            self._on_done()

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ended_cleanly = exc_type is None
        await self.release()
        # We cancelled the guarded task because the hold was lost: turn our
        # cancellation into HoldLost, unless someone else cancelled it too.
        if (
            self._cancelled_task
            and self._task is not None
            and self._task.uncancel() == 0
            and (exc is None or isinstance(exc, asyncio.CancelledError))
        ):
            raise HoldLost(self.key, self._lost or "lost") from exc
