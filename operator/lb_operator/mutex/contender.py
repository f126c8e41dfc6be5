"""One task contending for one lock against the API server, as a few named transitions.

Only the head of a key's local queue contends (``LeaseMutex`` sees to that).
Its states, after client-go's ``tryAcquireOrRenew``:

- **look**: the lease as the watch's cache has it (while synced), else as a GET returns it;
- **busy** (another holder, not expired by our clock): wait for news of the
  lease or its predicted expiry, then look again — or give up (``try_hold``);
- **free**: *take* it with one write (create, or update carrying the
  resourceVersion we looked at);
- after the write: it landed → a ``Hold``; 409 → look afresh; the server could
  not be reached → back off, look afresh. A write whose answer we never got
  is kept as ``in_doubt``: the next look adopts it if it landed, and the
  mutex clears exactly it if we give up.

Every step is bounded by the caller's deadline (``LockTimeout``).
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lb_operator.mutex import metrics
from lb_operator.mutex.errors import LeaseKeyCollision, LockTimeout
from lb_operator.mutex.hold import Hold
from lb_operator.mutex.leases import Conflict, Missing, Unavailable
from lb_operator.mutex.records import KEY_ANNOTATION, LOCK_LABEL, key_kind, lease_name, micro_time
from lb_operator.mutex.watch import Observed

if TYPE_CHECKING:
    from lb_operator.mutex.lease_mutex import LeaseMutex, WaitHook


@dataclass(frozen=True)
class Attempt:
    """The marks of one acquiring write, to recognise that very write on the server later.

    Holder identity alone is shared by every task of the process; the
    transitions count and the acquire time (microseconds) make it unique.
    """

    holder: str
    transitions: int
    acquire_time: str
    sent_at: float

    def landed_in(self, obj: dict[str, Any]) -> bool:
        spec = obj.get("spec") or {}
        return (
            spec.get("holderIdentity") == self.holder
            and int(spec.get("leaseTransitions") or 0) == self.transitions
            and spec.get("acquireTime") == self.acquire_time
        )


class Contender:
    """The head of one key's local queue, until it holds the lease or gives up."""

    def __init__(
        self,
        mutex: LeaseMutex,
        key: str,
        started: float,
        deadline: float,
        owner: dict[str, Any] | None,
        on_wait: WaitHook | None,
        *,
        wait: bool,
    ) -> None:
        self.key = key
        self.in_doubt: Attempt | None = None  # a write we sent and never saw the answer to
        self._mutex = mutex
        self._name = lease_name(key)
        self._kind = key_kind(key)
        self._started = started
        self._deadline = deadline
        self._owner = owner
        self._on_wait = on_wait
        self._wait = wait
        self._loop = asyncio.get_running_loop()
        self._backoff = mutex.settings.retry_initial
        self._holder_seen: str | None = None
        self._last_error: str | None = None

    async def run(self) -> Hold | None:
        """A ``Hold``, or ``None`` if not waiting and the lock is busy; ``LockTimeout`` at the deadline."""
        observed, fresh = await self._look(fresh=False)
        while True:
            if (
                observed is not None
                and self.in_doubt is not None
                and self.in_doubt.landed_in(observed.record.raw)
            ):
                return self._held(observed.record.raw, self.in_doubt)  # our unanswered write did land
            if self._busy(observed):
                assert observed is not None
                if not self._wait:
                    if fresh:
                        return None
                    observed, fresh = await self._look(fresh=True)  # the cache may trail a release by ms
                    continue
                observed, fresh = await self._wait_for_news(observed)
                continue
            try:
                return await self._take(observed)
            except Conflict:
                observed, fresh = await self._look(fresh=True)
            except Unavailable as error:
                await self._back_off(error)
                observed, fresh = await self._look(fresh=True)

    def _busy(self, observed: Observed | None) -> bool:
        if observed is None:
            return False
        record = observed.record
        return record.holder not in (None, self._mutex.identity) and self._loop.time() < observed.expires_at()

    def _remaining(self) -> float:
        """Seconds left before the deadline; ``LockTimeout`` when none are."""
        left = self._deadline - self._loop.time()
        if left <= 0:
            raise LockTimeout(
                self.key, self._holder_seen, self._loop.time() - self._started, self._last_error
            )
        return left

    async def _look(self, *, fresh: bool) -> tuple[Observed | None, bool]:
        """The lease from the cache (while synced, unless ``fresh``) or a GET; and whether it was a GET."""
        watch = self._mutex.watch
        while True:
            budget = self._remaining()
            if watch.synced and not fresh:
                observed = watch.get(self._name)
                got = False
            else:
                try:
                    observed = watch.observe(await self._mutex.api.get(self._name, self._kind, budget=budget))
                except Missing:
                    watch.forget(self._name)
                    observed = None
                except Unavailable as error:
                    await self._back_off(error)
                    continue
                got = True
            if observed is not None and observed.record.key not in (None, self.key):
                raise LeaseKeyCollision(
                    f"keys {self.key!r} and {observed.record.key!r} share Lease {self._name!r}; use keys "
                    "that differ in more than punctuation"
                )
            return observed, got

    async def _wait_for_news(self, observed: Observed) -> tuple[Observed | None, bool]:
        """Busy: tell the hook once, sleep until the lease changes or expires, look again."""
        record = observed.record
        self._holder_seen = record.holder
        if self._on_wait is not None:
            self._mutex.notify_waiting(self._on_wait, self.key, record.holder or "")
            self._on_wait = None
        watch = self._mutex.watch
        await watch.wait_for_newer(
            self._name, record.resource_version, min(self._deadline, observed.expires_at())
        )
        return await self._look(fresh=not watch.synced)

    async def _take(self, observed: Observed | None) -> Hold:
        """One acquiring write; ``Conflict`` if another writer was first, ``Unavailable`` if unknown."""
        budget = self._remaining()  # first: past the deadline, nothing is sent and nothing is in doubt
        previous = observed.record.transitions if observed is not None else 0
        attempt = Attempt(self._mutex.identity, previous + 1, micro_time(), self._loop.time())
        self.in_doubt = attempt
        try:
            written = await self._write(observed, attempt, budget)
        except Conflict:
            self.in_doubt = None  # refused: it did not land
            raise
        self._count(observed, attempt.sent_at)
        return self._held(written, attempt)

    def _held(self, written: dict[str, Any], attempt: Attempt) -> Hold:
        self.in_doubt = None
        self._mutex.watch.wrote(written, attempt.sent_at)
        return Hold(
            self._mutex, self.key, written, attempt.sent_at, lambda: self._mutex.release_local(self.key)
        )

    async def _write(self, observed: Observed | None, attempt: Attempt, budget: float) -> dict[str, Any]:
        """Create the lease, or update the version we observed, naming us as holder."""
        mutex = self._mutex
        spec = {
            "holderIdentity": attempt.holder,
            "leaseDurationSeconds": mutex.settings.lease_duration,
            "acquireTime": attempt.acquire_time,
            "renewTime": attempt.acquire_time,
            "leaseTransitions": attempt.transitions,
        }
        if observed is None:
            metadata: dict[str, Any] = {
                "name": self._name,
                "namespace": mutex.namespace,
                "labels": {LOCK_LABEL: "true"},
                "annotations": {KEY_ANNOTATION: self.key},
            }
            if self._owner is not None:
                metadata["ownerReferences"] = [self._owner]
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": metadata,
                "spec": spec,
            }
            return await mutex.api.create(body, self._kind, budget=budget)
        body = copy.deepcopy(observed.record.raw)
        body["spec"] = {**body.get("spec", {}), **spec}  # keep fields we do not set
        body["metadata"].setdefault("annotations", {})[KEY_ANNOTATION] = self.key
        return await mutex.api.replace(body, self._kind, budget=budget)

    async def _back_off(self, error: Unavailable) -> None:
        self._last_error = str(error)
        pause = min(self._backoff, self._remaining())
        self._backoff = min(self._backoff * 2, self._mutex.settings.retry_max)
        await asyncio.sleep(pause)

    def _count(self, observed: Observed | None, sent: float) -> None:
        metrics.ACQUISITIONS.labels(kind=self._kind).inc()
        metrics.WAIT_SECONDS.labels(kind=self._kind).observe(sent - self._started)
        record = observed.record if observed is not None else None
        if record is not None and record.transitions > 0:
            if record.holder is None:
                metrics.HANDOVERS.labels(kind=self._kind, how="released").inc()
            elif record.holder != self._mutex.identity:
                metrics.HANDOVERS.labels(kind=self._kind, how="expired").inc()
