"""One shared watch of the lock Leases: a local cache, and wake-ups for waiters.

Why this exists: client-go's leader election and the official Python
``LeaseLock`` poll the Lease every few seconds, so a release is noticed
seconds late, and every waiter costs a request per poll. Here one watch per
process keeps the last-seen record of every lock Lease, and wakes the
waiters of a Lease the moment it changes: a release reaches the next waiter
in milliseconds, and waiting costs no requests at all.

Each record is stamped with the local *monotonic* time at which this process
first saw that version. Expiry is judged from that stamp (client-go's rule),
never by comparing our wall clock with the holder's ``renewTime``, so clock
skew between nodes cannot make a live lease look expired.

When the watch is down (API server trouble), ``synced`` is false: waiters
then read the Lease themselves and fall back to a timer at its predicted
expiry, and the watch is re-established with back-off.

A watch can also go quiet without failing: a half-open connection (the
server gone, no FIN), or a server that stopped sending. Its cache then looks
complete but is not, and every lease in it ages by our clock — a live
holder would look expired. So every Lease write this process makes is a
probe (``wrote``): the stream must deliver that version (or a newer one)
within ``watch_stall_timeout``, or the stream is declared stalled, cut, and
the cache relisted. ``fresh_at`` is the local time up to which the stream
is proven to have delivered everything: a caller that acts on what is
*absent* or *expired* in the cache (the sharder) checks it first. The back-off grows
over consecutive watch streams that brought nothing (a failed LIST, a WATCH
refused or cut at once), and resets only once a stream delivers.

Cache invariants, kept by ``observe`` and ``forget`` alone:

1. A record is only ever replaced by a *newer* version (a higher
   resourceVersion): a stale event, GET or LIST cannot roll it back.
2. A record is only dropped by news of a deletion at least as new as it
   (``forget(name, deleted_at)``): a stale DELETED event, or a LIST taken
   before we wrote the Lease, cannot drop a Lease we re-created since.
3. ``wait_for_newer`` returns only when a newer record arrives, the record
   is dropped, the sync state flips, or its timer fires — never at once
   because the record is missing, so a caller looping on it always yields.

A hold's renewer relies on none of these for safety (it judges by its own
writes and the clock); they keep waiting cheap and the event loop free.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

from lb_operator.mutex import metrics
from lb_operator.mutex.leases import LeaseCalls, Unavailable
from lb_operator.mutex.records import LeaseRecord, parse_resource_version
from lb_operator.mutex.settings import MutexSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    """A Lease record and the local monotonic time its version was first seen."""

    record: LeaseRecord
    seen_at: float

    def expires_at(self) -> float:
        return self.seen_at + self.record.duration


class LeaseWatch:
    """The process-wide cache of lock Leases, kept current by a watch."""

    def __init__(self, api: LeaseCalls, settings: MutexSettings) -> None:
        self._api = api
        self._settings = settings
        self._records: dict[str, Observed] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._listeners: dict[asyncio.Event, str] = {}
        self._synced = False
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self._probes: collections.deque[tuple[int, float]] = collections.deque()  # (version, sent at)
        self._stream_version = 0  # the newest resourceVersion the stream (or a relist) delivered
        self._fresh_at: float | None = None
        self._stall: asyncio.Timeout | None = None  # the open stream's watchdog
        self.stalls = 0

    @property
    def synced(self) -> bool:
        """True while the cache is known to be complete and current."""
        return self._synced

    @property
    def fresh_at(self) -> float | None:
        """Loop time up to which the stream has provably delivered everything (``None``: not yet).

        Proven by our own writes coming back through the stream: a write
        sent at ``t`` whose version the stream delivered shows the cache
        complete as of ``t`` at least.
        """
        return self._fresh_at if self._synced else None

    def fresh_within(self, seconds: float) -> bool:
        """Whether the cache is proven complete as of no more than ``seconds`` ago."""
        fresh = self.fresh_at
        return fresh is not None and asyncio.get_running_loop().time() - fresh <= seconds

    def stalled_for(self) -> float:
        """Seconds the oldest of our writes has waited to show up in the stream (0: none waits)."""
        if not self._probes:
            return 0.0
        return max(0.0, asyncio.get_running_loop().time() - self._probes[0][1])

    def wrote(self, obj: dict[str, Any], sent_at: float) -> Observed:
        """Take in a Lease we wrote (sent at loop time ``sent_at``); the stream must deliver its version."""
        observed = self.observe(obj)
        version = LeaseRecord.from_object(obj).version
        if version > self._stream_version:
            self._probes.append((version, sent_at))
            self._arm()
        elif self._synced:  # the stream delivered a newer version already: it is current as of our send
            self._fresh_at = max(self._fresh_at or sent_at, sent_at)
        return observed

    def _prove(self, version: int) -> None:
        """The stream (or a relist) delivered ``version``: probes up to it are answered."""
        self._stream_version = max(self._stream_version, version)
        while self._probes and self._probes[0][0] <= self._stream_version:
            _, sent_at = self._probes.popleft()
            self._fresh_at = max(self._fresh_at or sent_at, sent_at)
        self._arm()

    def _arm(self) -> None:
        """Point the open stream's watchdog at the oldest unanswered probe (or nothing).

        Called from any task (a hold's renewer writes a probe). A watchdog that
        has fired already cannot be moved (asyncio refuses): the stream is being
        cut, and the next stream's watchdog is armed from the probes left.
        """
        if self._stall is None or self._stall.expired():
            return
        due = self._probes[0][1] + self._settings.watch_stall_timeout if self._probes else None
        self._stall.reschedule(due)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lease-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._set_synced(False)

    def get(self, name: str) -> Observed | None:
        return self._records.get(name)

    def names(self) -> list[str]:
        return list(self._records)

    def waiting(self, name: str) -> int:
        """How many tasks wait for news of ``name`` (for tests and introspection)."""
        return len(self._waiters.get(name, ()))

    def observe(self, obj: dict[str, Any]) -> Observed:
        """Take in a Lease we read or wrote ourselves, if it is newer than what we have (invariant 1)."""
        record = LeaseRecord.from_object(obj)
        current = self._records.get(record.name)
        if current is not None and not record.is_newer_than(current.record):
            return current
        observed = Observed(record, asyncio.get_running_loop().time())
        self._records[record.name] = observed
        self._wake(record.name, record.key)
        return observed

    def forget(self, name: str, deleted_at: str | None = None) -> None:
        """The Lease was deleted at version ``deleted_at`` (``None``: at an unknown, current version).

        Keeps a record newer than the deletion (invariant 2): the Lease was
        re-created since, e.g. by our own update (PUT creates a missing Lease).
        """
        current = self._records.get(name)
        if current is None:
            return
        if deleted_at is not None and current.record.version > parse_resource_version(deleted_at):
            return
        del self._records[name]
        self._wake(name, current.record.key)

    async def wait_for_newer(self, name: str, version: str, until: float) -> None:
        """Return once a record of ``name`` newer than ``version`` is cached, on news, or at ``until``.

        Other news: the record was dropped, or the sync state flipped. With
        no record cached this waits (invariant 3); it returns at once only
        if a newer record is already there.
        """
        current = self._records.get(name)
        if current is not None and current.record.version > parse_resource_version(version):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(name, set())
        waiters.add(future)
        try:
            async with asyncio.timeout_at(until):
                await future
        except TimeoutError:
            pass
        finally:
            waiters.discard(future)
            if not waiters:
                self._waiters.pop(name, None)

    def listen(self, prefix: str = "") -> asyncio.Event:
        """An event set on every change of a Lease whose lock key starts with ``prefix`` (clear, then wait).

        Call ``unlisten`` when done.
        """
        event = asyncio.Event()
        self._listeners[event] = prefix
        return event

    def unlisten(self, event: asyncio.Event) -> None:
        self._listeners.pop(event, None)

    def _wake(self, name: str, key: str | None = None) -> None:
        for listener, prefix in self._listeners.items():
            if key is not None and key.startswith(prefix):
                listener.set()
        for future in self._waiters.get(name, ()):
            if not future.done():
                future.set_result(None)

    def _set_synced(self, synced: bool) -> None:
        if self._synced != synced:
            self._synced = synced
            # Waiters and listeners relying on the watch must re-check how to wait.
            for name in list(self._waiters):
                self._wake(name)
            for listener in self._listeners:
                listener.set()

    async def _run(self) -> None:
        failures = 0  # consecutive watch streams that brought nothing
        while True:
            try:
                version = await self._relist()
                while True:
                    version, delivered = await self._follow(version)
                    if delivered:
                        failures = 0
                        continue
                    failures += 1  # cut at once with nothing: a proxy, or a flaky server
                    self._set_synced(False)  # no watch is open while we pause
                    await self._pause(failures)
            except Unavailable as error:
                self.last_error = str(error)
                logger.warning("lock lease watch interrupted: %s; re-establishing", error)
            except _Expired:
                logger.info("lock lease watch expired (410); relisting")
            except _Stalled as stalled:
                self.stalls += 1
                self.last_error = str(stalled)
                logger.warning("lock lease watch %s; relisting", stalled)
            except Exception as error:  # never die silently: waiters would trust a frozen cache
                self.last_error = f"{type(error).__name__}: {error}"
                logger.exception("lock lease watch failed unexpectedly; re-establishing")
            self._set_synced(False)
            metrics.WATCH_RESTARTS.inc()
            failures += 1
            await self._pause(failures)

    async def _pause(self, failures: int) -> None:
        """Back off before the next LIST or WATCH: doubling per consecutive failure, jittered."""
        ceiling = self._settings.retry_initial * 2 ** min(failures - 1, 30)
        await asyncio.sleep(min(ceiling, self._settings.watch_backoff_max) * random.uniform(0.8, 1.2))

    async def _relist(self) -> str:
        sent_at = asyncio.get_running_loop().time()
        listing = await self._api.list()
        listed_at = str(listing["metadata"]["resourceVersion"])
        present = set()
        for item in listing.get("items", []):
            item.setdefault("apiVersion", "coordination.k8s.io/v1")
            item.setdefault("kind", "Lease")
            present.add(self.observe(item).record.name)
        for name in set(self._records) - present:
            self.forget(name, deleted_at=listed_at)  # absent from the snapshot: gone, unless newer
        # A relist is a consistent read: it proves the cache complete as of when it was sent, whatever the
        # probes say; those it answers go, the others wait for the stream.
        self._fresh_at = max(self._fresh_at or sent_at, sent_at)
        self._prove(parse_resource_version(listed_at))
        self._set_synced(True)
        return listed_at

    async def _follow(self, version: str) -> tuple[str, bool]:
        """Apply events until the server ends the stream; return where to resume, and if it delivered.

        A stream that stayed open for ``watch_backoff_max`` counts as having
        delivered even with no event: the server simply had nothing to say.
        A stream that leaves one of our writes undelivered past
        ``watch_stall_timeout`` is cut (``_Stalled``).
        """
        loop = asyncio.get_running_loop()
        opened = loop.time()
        delivered = False
        try:
            async with asyncio.timeout(None) as watchdog:
                self._stall = watchdog
                self._arm()
                async for event in self._api.watch(version, self._settings.watch_timeout):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise _Expired
                        raise Unavailable(f"watch error: {obj.get('message', obj)}")
                    delivered = True
                    version = str(obj.get("metadata", {}).get("resourceVersion", version))
                    if kind in ("ADDED", "MODIFIED"):
                        self.observe(obj)
                    elif kind == "DELETED":
                        self.forget(str(obj["metadata"]["name"]), deleted_at=version)
                    with contextlib.suppress(ValueError):
                        self._prove(parse_resource_version(version))
                    self._set_synced(True)
        except TimeoutError:
            raise _Stalled(
                f"delivered none of our writes for {self._settings.watch_stall_timeout}s (a half-open "
                "connection, or a server that stopped sending)"
            ) from None
        finally:
            self._stall = None
        lasted = loop.time() - opened
        return version, delivered or lasted >= self._settings.watch_backoff_max


class _Stalled(Exception):
    """The stream is open but did not deliver a write of ours in time: cut it and list again."""


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""
