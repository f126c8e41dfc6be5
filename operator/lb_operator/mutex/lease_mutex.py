"""A mutex across processes and nodes, built on ``coordination.k8s.io/v1`` Leases.

Why this exists: cloud load-balancer APIs apply one change at a time per
load balancer, and the operator runs as several active replicas. An
in-process lock (what the Terraform provider used) cannot serialize
replicas; client-go's leader election can, but it polls every few seconds,
takes over a crashed holder only after a full lease duration plus a poll,
and hands out no fencing token. This lock:

- acquires by *create*, or by *update carrying the resourceVersion read*
  (a 409 means another writer won — optimistic concurrency, no server-side lock);
- waits by watching (one shared watch per process), never by polling, so a
  release wakes the next waiter within milliseconds;
- lets only the head of a per-key FIFO queue talk to the API server, so N
  local waiters cost one contender;
- bounds every wait by the caller's absolute deadline (``LockTimeout``) and
  aborts at once on cancellation, never leaving a lease held by a caller who
  gave up;
- renews while held and stops the guarded task when the hold may have
  lapsed (``HoldLost``);
- optionally (``MutexSettings.pass_within``) passes a held lease from one
  task of the process straight to the next one queued for it, with no
  write, so a burst of changes to one tree costs one acquire and one
  release, not one of each per change.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kubernetes.aio import client

from lb_operator.mutex import metrics
from lb_operator.mutex.contender import Attempt, Contender
from lb_operator.mutex.errors import LockTimeout
from lb_operator.mutex.hold import Hold, Passed
from lb_operator.mutex.leases import Conflict, LeaseAPI, LeaseCalls, Missing, Unavailable
from lb_operator.mutex.records import key_kind, lease_name, micro_time
from lb_operator.mutex.settings import MutexSettings
from lb_operator.mutex.sweeper import sweep_forever
from lb_operator.mutex.watch import LeaseWatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Waiting:
    """Told to an ``on_wait`` hook when a wait starts: the lock is busy and we are queueing.

    At most twice per ``hold()``: once ``local`` (behind another task of this
    process), and once when, at the head of the local queue, another process
    holds the Lease.
    """

    key: str
    lease_name: str
    holder: str
    local: bool = False  # queued behind another task of this process, not behind another process


WaitHook = Callable[[Waiting], Awaitable[None]]


@dataclass
class _LocalQueue:
    """The per-key FIFO of this process; asyncio.Lock serves waiters in arrival order."""

    key: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    passed: Passed | None = None  # a lease released by the last holder to whoever takes ``lock`` next
    linger: asyncio.TimerHandle | None = None  # ``passed`` with nobody waiting: released when this fires


class LeaseMutex:
    """Per-key locks shared by every process that uses the same namespace.

    One per process; use as ``async with LeaseMutex(...) as mutex:`` (starts
    the shared watch and the sweeper, and stops them on exit)::

        async with mutex.hold("lb/<uuid>", deadline=loop.time() + 30) as held:
            held.check()
            ...  # the guarded work; held.fencing_token orders the holders
    """

    def __init__(
        self,
        api_client: client.ApiClient | None,
        namespace: str,
        identity: str,
        settings: MutexSettings | None = None,
        *,
        sweep: bool = True,
        lease_calls: LeaseCalls | None = None,
    ) -> None:
        """``lease_calls`` replaces the API client's Lease calls (a fake Lease API in unit tests)."""
        if not identity:
            raise ValueError("identity must name this process's pod (e.g. its pod name)")
        self.settings = settings or MutexSettings()
        # The random part tells apart two lives of one pod name (a restart).
        self.identity = f"{identity}/{secrets.token_hex(4)}"
        self.namespace = namespace
        if lease_calls is not None:
            self.api: LeaseCalls = lease_calls
        elif api_client is not None:
            self.api = LeaseAPI(api_client, namespace, self.settings.request_timeout)
        else:
            raise ValueError("give an API client (or, in tests, lease_calls)")
        self.watch = LeaseWatch(self.api, self.settings)
        self._queues: dict[str, _LocalQueue] = {}  # by Lease name; an entry only while in use
        self._sweep = sweep
        self._sweeper: asyncio.Task[None] | None = None
        self._hooks: set[asyncio.Task[None]] = set()
        self._cleanups: set[asyncio.Task[None]] = set()
        self._idle: dict[str, asyncio.Event] = {}  # Lease name → set when its local queue empties

    async def __aenter__(self) -> LeaseMutex:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start the shared watch (and the sweeper); called by ``async with`` or the first use."""
        self.watch.start()
        if self._sweep and self._sweeper is None:
            self._sweeper = asyncio.create_task(
                sweep_forever(self.api, self.watch, self.settings, self.is_busy), name="lease-sweeper"
            )

    async def close(self) -> None:
        for queue in list(self._queues.values()):
            if queue.linger is not None and queue.passed is not None:  # nobody comes for it now
                queue.linger.cancel()
                self._end_linger(queue.key, queue, queue.passed)
        tasks = [t for t in (self._sweeper, *self._hooks) if t is not None]
        self._sweeper = None
        for task in tasks:
            task.cancel()
        # In-doubt cleanups and releases of passed leases are bounded by the release timeout: let them
        # finish, also those that tasks leaving meanwhile start.
        await asyncio.gather(*tasks, return_exceptions=True)
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)
        await self.watch.stop()

    def is_busy(self, key_or_name: str) -> bool:
        """True while a task of this process holds or waits for the lock (by key or Lease name)."""
        return lease_name(key_or_name) in self._queues  # a Lease name maps to itself

    def hold(
        self,
        key: str,
        *,
        deadline: float,
        owner: dict[str, Any] | None = None,
        on_wait: WaitHook | None = None,
    ) -> _HoldContext:
        """Wait for lock ``key`` until ``deadline`` (event-loop time); use with ``async with``.

        Raises ``LockTimeout`` at the deadline. ``owner`` is an owner reference
        put on the Lease when it is created (same namespace only: a
        cross-namespace owner makes the garbage collector delete the Lease).
        ``on_wait`` is called when a wait starts (see ``Waiting``), e.g. to post an Event.
        """
        return _HoldContext(self, key, deadline, owner, on_wait)

    async def try_hold(self, key: str, *, owner: dict[str, Any] | None = None) -> Hold | None:
        """Take lock ``key`` if it is free right now, else return ``None``; never waits for a holder."""
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout
        return await self._acquire(key, deadline, owner, None, wait=False)

    async def discard(self, key: str, deadline: float | None = None) -> bool:
        """Delete the Lease of ``key`` once nobody holds it (its parent is gone); True if it is gone.

        Waits until ``deadline`` (event-loop time; default: do not wait) for
        a current holder to release — a task of this process included, e.g.
        a child's deletion still holding its load balancer's lock.
        Version-checked, so a Lease acquired meanwhile survives; the sweeper
        removes whatever this misses.
        """
        name, kind = lease_name(key), key_kind(key)
        loop = asyncio.get_running_loop()
        until = loop.time() if deadline is None else deadline
        while True:
            if self.is_busy(key):
                if loop.time() >= until:
                    return False
                await self._until_idle(name, until)
                continue
            try:
                # Within the caller's deadline; with none, one request's worth.
                budget = (
                    self.settings.request_timeout if deadline is None else max(0.001, until - loop.time())
                )
                observed = self.watch.observe(await self.api.get(name, kind, budget=budget))
                record = observed.record
                if record.holder is None or loop.time() >= observed.expires_at():
                    await self.api.delete(name, record.resource_version, kind)
                    self.watch.forget(name, deleted_at=record.resource_version)
                    return True
            except Missing:
                self.watch.forget(name)
                return True
            except Conflict:
                continue  # changed since we read it: look again
            except Unavailable:
                return False
            if loop.time() >= until:
                return False
            await self.watch.wait_for_newer(name, record.resource_version, min(until, observed.expires_at()))

    async def _until_idle(self, name: str, until: float) -> None:
        """Wait until no task of this process holds or waits for Lease ``name``, or until ``until``."""
        idle = self._idle.setdefault(name, asyncio.Event())
        try:
            async with asyncio.timeout_at(until):
                await idle.wait()
        except TimeoutError:
            pass
        finally:
            if self._idle.get(name) is idle and not self.is_busy(name):
                del self._idle[name]

    # -- acquisition -----------------------------------------------------------------------------

    async def _acquire(
        self, key: str, deadline: float, owner: dict[str, Any] | None, on_wait: WaitHook | None, *, wait: bool
    ) -> Hold | None:
        kind = key_kind(key)
        self.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        queue = self._queues.setdefault(lease_name(key), _LocalQueue(key))
        queue.users += 1
        contender: Contender | None = None
        hold: Hold | None = None
        try:
            if queue.lock.locked():
                if not wait:
                    return None
                # Told as local; told again (not local) if, at the head, another process holds it.
                holder = f"{self.identity} (another task of this process)"
                self.notify_waiting(on_wait, key, holder, local=True)
            try:
                async with asyncio.timeout_at(deadline):
                    await queue.lock.acquire()
            except TimeoutError:
                raise LockTimeout(
                    key, self.identity, loop.time() - started, "queued behind local tasks"
                ) from None
            passed, queue.passed = queue.passed, None
            if queue.linger is not None:  # we came while it lingered: it is ours, the linger is over
                queue.linger.cancel()
                queue.linger = None
                queue.users -= 1  # the linger's own use of the queue (we are a user: it stays)
            if passed is not None:
                hold = self._hold_passed(key, passed, started) if loop.time() < deadline else None
                if hold is not None:
                    return hold
                # Too late (our deadline passed, or the lease may have lapsed): give it back, so that a
                # contender that times out below does not leave it named ours and unrenewed.
                self._release_passed(key, passed)
            contender = Contender(self, key, started, deadline, owner, on_wait, wait=wait)
            hold = await contender.run()
            return hold
        except LockTimeout:
            metrics.TIMEOUTS.labels(kind=kind).inc()
            metrics.WAIT_SECONDS.labels(kind=kind).observe(loop.time() - started)
            raise
        finally:
            if hold is None:
                if contender is None:
                    self._leave(key)  # never got the local queue
                elif contender.in_doubt is None:
                    self.release_local(key)
                else:
                    self._clean_up_in_doubt(key, contender.in_doubt)

    def pass_on(self, hold: Hold) -> bool:
        """Called by a releasing ``hold``: pass its lease to the next task queued for it; True if done.

        Nothing is written: the lease stays ours, and the next holder's
        renewer carries on. Not when nobody waits, when ``pass_within`` has
        run out (other processes get a chance), or when the hold may not be
        passed (``Hold.passed``).
        """
        queue = self._queues.get(hold.lease_name)
        if self.settings.pass_within <= 0 or queue is None:
            return False
        waiting = queue.users > 1
        if not waiting and (self.settings.linger <= 0 or not hold.ended_cleanly):
            return False  # a section that failed (deadline, cloud error) gives the lease back at once
        passed = hold.passed()
        if passed is None:
            return False
        queue.passed = passed
        if not waiting:
            self._linger(hold.key, queue, passed)
        return True

    def _linger(self, key: str, queue: _LocalQueue, passed: Passed) -> None:
        """Keep ``passed`` for a task of ours that comes within ``linger`` (and before the renewal due,
        which nobody would make), then release it."""
        loop = asyncio.get_running_loop()
        ends = min(loop.time() + self.settings.linger, passed.renewed_at + self.settings.renew_interval)
        queue.users += 1  # the queue stays (``is_busy``: the sweeper and ``discard`` leave the lease alone)
        queue.linger = loop.call_later(max(0.0, ends - loop.time()), self._end_linger, key, queue, passed)

    def _end_linger(self, key: str, queue: _LocalQueue, passed: Passed) -> None:
        if self._queues.get(lease_name(key)) is not queue or queue.passed is not passed:
            return  # taken meanwhile
        queue.passed = queue.linger = None
        self._release_passed(key, passed)
        self._leave(key)

    def _hold_passed(self, key: str, passed: Passed, started: float) -> Hold | None:
        """The hold of a lease passed to us; None if it may have lapsed since (then we contend)."""
        loop = asyncio.get_running_loop()
        if loop.time() - passed.renewed_at >= self.settings.renew_deadline:
            return None  # the predecessor's task kept the loop too long: the lease may be gone
        kind = key_kind(key)
        metrics.ACQUISITIONS.labels(kind=kind).inc()
        metrics.WAIT_SECONDS.labels(kind=kind).observe(loop.time() - started)
        metrics.HANDOVERS.labels(kind=kind, how="passed").inc()
        return Hold(
            self,
            key,
            passed.obj,
            passed.renewed_at,
            lambda: self.release_local(key),
            taken_at=passed.taken_at,
            passes=passed.passes,
        )

    def _clean_up_in_doubt(self, key: str, attempt: Attempt) -> None:
        """Our acquiring write may have landed although we gave up: clear exactly that write.

        Runs in its own task, so the caller's ``LockTimeout`` or cancellation
        is not delayed, and owns the local queue until it is done: the next
        local task cannot get in while the cleanup may still clear a lease
        (it would clear that task's hold, and let a remote replica in).
        """
        task = asyncio.create_task(self._clear_attempt(key, attempt), name=f"clean up {lease_name(key)}")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        task.add_done_callback(lambda _: self.release_local(key))

    async def _clear_attempt(self, key: str, attempt: Attempt) -> None:
        name, kind = lease_name(key), key_kind(key)
        try:
            obj = await self.api.get(name, kind)
        except (Missing, Unavailable):
            return  # absent, or unknowable: a lease we may hold expires by itself
        if attempt.landed_in(obj):
            await self.clear_holder(key, obj, attempt.transitions)

    def _leave(self, key: str) -> None:
        name = lease_name(key)
        queue = self._queues.get(name)
        if queue is not None:
            queue.users -= 1
            if queue.users <= 0:
                del self._queues[name]
                if queue.passed is not None:  # passed to a task that gave up waiting: release it now
                    self._release_passed(key, queue.passed)
                idle = self._idle.pop(name, None)
                if idle is not None:
                    idle.set()

    def _release_passed(self, key: str, passed: Passed) -> None:
        transitions = int(passed.obj.get("spec", {}).get("leaseTransitions") or 0)
        task = asyncio.create_task(
            self.clear_holder(key, passed.obj, transitions), name=f"release {lease_name(key)}"
        )
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def release_local(self, key: str) -> None:
        queue = self._queues.get(lease_name(key))
        if queue is not None:
            queue.lock.release()
        self._leave(key)

    def notify_waiting(self, hook: WaitHook | None, key: str, holder: str, *, local: bool = False) -> None:
        """Run the caller's wait hook beside the wait: it must neither block nor break the lock."""
        if hook is None:
            return
        waiting = Waiting(key, lease_name(key), holder, local)

        async def run() -> None:
            try:
                await hook(waiting)
            except Exception:
                logger.exception("on_wait hook failed for %s", waiting.key)

        task = asyncio.create_task(run(), name=f"on_wait {waiting.lease_name}")
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    # -- release ---------------------------------------------------------------------------------

    async def clear_holder(self, key: str, obj: dict[str, Any], transitions: int) -> None:
        """Clear our holder identity, version-checked; on 409 re-read and clear only if still ours."""
        name, kind = lease_name(key), key_kind(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.release_timeout
        backoff = self.settings.retry_initial
        current: dict[str, Any] | None = obj
        while loop.time() < deadline:
            try:
                if current is None:
                    current = await self.api.get(name, kind, budget=deadline - loop.time())
                    self.watch.observe(current)
                spec = current.get("spec") or {}
                if (
                    spec.get("holderIdentity") != self.identity
                    or int(spec.get("leaseTransitions") or 0) != transitions
                ):
                    return  # no longer ours: nothing to release
                body = copy.deepcopy(current)
                body["spec"]["holderIdentity"] = None
                body["spec"]["renewTime"] = micro_time()
                sent = loop.time()
                self.watch.wrote(await self.api.replace(body, kind, budget=deadline - loop.time()), sent)
                return
            except Conflict:
                current = None
            except Missing:
                return
            except Unavailable as error:
                logger.info("releasing %s failed (%s); retrying until the release timeout", name, error)
                current = None
                await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                backoff = min(backoff * 2, self.settings.retry_max)
        logger.warning(
            "could not release %s in %ss; it expires by itself", name, self.settings.release_timeout
        )


class _HoldContext:
    """``async with mutex.hold(...) as held``: acquire on entry, release (and report loss) on exit."""

    def __init__(
        self,
        mutex: LeaseMutex,
        key: str,
        deadline: float,
        owner: dict[str, Any] | None,
        on_wait: WaitHook | None,
    ) -> None:
        self._args = (mutex, key, deadline, owner, on_wait)
        self._hold: Hold | None = None

    async def __aenter__(self) -> Hold:
        mutex, key, deadline, owner, on_wait = self._args
        hold = await mutex._acquire(key, deadline, owner, on_wait, wait=True)
        assert hold is not None, "a waiting acquire returns a hold or raises"
        self._hold = hold
        return hold

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._hold is not None:
            await self._hold.__aexit__(exc_type, exc, tb)
