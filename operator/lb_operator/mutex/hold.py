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
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lb_operator.mutex import metrics
from lb_operator.mutex.errors import HoldLost
from lb_operator.mutex.leases import Conflict, Missing, Unavailable
from lb_operator.mutex.records import LeaseRecord, key_kind, micro_time

if TYPE_CHECKING:
    from lb_operator.mutex.lease_mutex import LeaseMutex

logger = logging.getLogger(__name__)


class Hold:
    """The caller's proof of holding lock ``key``; leave its ``async with`` block to release it.

    ``fencing_token`` is the resourceVersion of the write that acquired the
    lease: resource versions are comparable integers (Kubernetes ≥ 1.35), so
    tokens strictly increase per key across every holder ever — also across
    a Lease the sweeper deleted and a later holder re-created, where
    ``leaseTransitions`` would start again.
    """

    def __init__(
        self,
        mutex: LeaseMutex,
        key: str,
        obj: dict[str, Any],
        sent_at: float,
        on_done: Callable[[], None],
    ) -> None:
        record = LeaseRecord.from_object(obj)
        self.key = key
        self.lease_name = record.name
        self.fencing_token = record.version
        self.transitions = record.transitions
        self._mutex = mutex
        self._kind = key_kind(key)
        self._object = obj
        self._renewed_at = sent_at  # when the last successful write was *sent*: the conservative bound
        self._acquired_at = sent_at
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._lost: str | None = None
        self._cancelled_task = False
        self._released = False
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
        """True once the hold may have lapsed (also judged from the clock, like ``check()``)."""
        self._judge_by_clock()
        return self._lost is not None

    def check(self) -> None:
        """Raise ``HoldLost`` if the hold may have lapsed; call it before each guarded write."""
        self._judge_by_clock()
        if self._lost is not None:
            raise HoldLost(self.key, self._lost)

    def _judge_by_clock(self) -> None:
        # A process that was paused (SIGSTOP, a long GC, a blocked loop) learns
        # here, before its renewer gets to run, that its lease may be gone.
        silent = self._loop.time() - self._renewed_at
        if self._lost is None and not self._released and silent > self._mutex.settings.renew_deadline:
            self._lose(
                f"not renewed for {silent:.1f}s (renew deadline {self._mutex.settings.renew_deadline}s)"
            )

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

    async def _renew_loop(self) -> None:
        settings = self._mutex.settings
        watch = self._mutex.watch
        api = self._mutex.api
        retry = settings.retry_initial
        next_renewal = self._renewed_at + settings.renew_interval
        while True:
            # Sleep until the next renewal, but wake early if the watch shows a change.
            version = self._object["metadata"]["resourceVersion"]
            await watch.wait_for_change(self.lease_name, version, next_renewal)
            self._judge_by_clock()
            if self._lost is not None:
                return
            seen = watch.get(self.lease_name)
            if seen is not None and seen.record.resource_version != version:
                if seen.record.holder != self._mutex.identity or seen.record.transitions != self.transitions:
                    self._lose(f"lease taken by {seen.record.holder or 'nobody (released by another)'}")
                    return
                self._object = seen.record.raw  # still ours: carry the newest version
            if self._loop.time() < next_renewal:
                continue
            body = copy.deepcopy(self._object)
            body["spec"]["renewTime"] = micro_time()
            sent = self._loop.time()
            budget = self._renewed_at + settings.renew_deadline - sent
            try:
                written = await api.replace(body, self._kind, budget=budget)
            except Conflict:
                if not await self._reconcile_after_conflict():
                    return
                next_renewal = self._loop.time()  # renew again at once with the fresh version
                continue
            except Missing:
                self._lose("lease was deleted")
                return
            except Unavailable as error:
                logger.info("renewing %s failed (%s); retrying", self.lease_name, error)
                next_renewal = self._loop.time() + retry
                retry = min(retry * 2, settings.renew_interval / 2)
                continue
            self._object = written
            self._renewed_at = sent
            watch.observe(written)
            retry = settings.retry_initial
            next_renewal = sent + settings.renew_interval

    async def _reconcile_after_conflict(self) -> bool:
        """After a 409: still ours (keep the newer version) → True; else lose → False."""
        try:
            current = await self._mutex.api.get(self.lease_name, self._kind)
        except Missing:
            self._lose("lease was deleted")
            return False
        except Unavailable:
            return True  # unknown: the renew deadline will decide
        record = self._mutex.watch.observe(current).record
        if record.holder == self._mutex.identity and record.transitions == self.transitions:
            self._object = record.raw
            return True
        self._lose(f"lease taken by {record.holder or 'nobody'}")
        return False

    async def release(self) -> None:
        """Stop renewing and clear the holder; idempotent, and finishes even if the caller is cancelled."""
        if self._released:
            return
        self._released = True
        task = asyncio.create_task(self._release(), name=f"release {self.lease_name}")
        await asyncio.shield(task)

    async def _release(self) -> None:
        try:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            if self._lost is None:
                await self._mutex.clear_holder(self.key, self._object, self.transitions)
        finally:
            metrics.HOLD_SECONDS.labels(kind=self._kind).observe(self._loop.time() - self._acquired_at)
            self._on_done()

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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
