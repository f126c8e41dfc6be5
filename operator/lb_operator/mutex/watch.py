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
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from lb_operator.mutex import metrics
from lb_operator.mutex.leases import LeaseAPI, Unavailable
from lb_operator.mutex.records import LeaseRecord
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

    def __init__(self, api: LeaseAPI, settings: MutexSettings) -> None:
        self._api = api
        self._settings = settings
        self._records: dict[str, Observed] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._synced = False
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def synced(self) -> bool:
        """True while the cache is known to be complete and current."""
        return self._synced

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

    def observe(self, obj: dict[str, Any]) -> Observed:
        """Take in a Lease we read or wrote ourselves, if it is newer than what we have."""
        record = LeaseRecord.from_object(obj)
        current = self._records.get(record.name)
        if current is not None and not record.is_newer_than(current.record):
            return current
        observed = Observed(record, asyncio.get_running_loop().time())
        self._records[record.name] = observed
        self._wake(record.name)
        return observed

    def forget(self, name: str) -> None:
        """The Lease is gone (deleted, or a GET said 404)."""
        if self._records.pop(name, None) is not None:
            self._wake(name)

    async def wait_for_change(self, name: str, version: str | None, until: float) -> None:
        """Return once the cached version of ``name`` is not ``version``, or at ``until`` (loop time)."""
        current = self._records.get(name)
        if (current.record.resource_version if current else None) != version:
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

    def _wake(self, name: str) -> None:
        for future in self._waiters.get(name, ()):
            if not future.done():
                future.set_result(None)

    def _set_synced(self, synced: bool) -> None:
        if self._synced != synced:
            self._synced = synced
            # Waiters relying on the watch must re-check how to wait.
            for name in list(self._waiters):
                self._wake(name)

    async def _run(self) -> None:
        backoff = self._settings.retry_initial
        while True:
            try:
                version = await self._relist()
                backoff = self._settings.retry_initial
                while True:
                    version = await self._follow(version)
            except Unavailable as error:
                self.last_error = str(error)
                logger.warning("lock lease watch interrupted: %s; re-establishing", error)
            except _Expired:
                logger.info("lock lease watch expired (410); relisting")
            self._set_synced(False)
            metrics.WATCH_RESTARTS.inc()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self._settings.watch_backoff_max)

    async def _relist(self) -> str:
        listing = await self._api.list()
        present = set()
        for item in listing.get("items", []):
            item.setdefault("apiVersion", "coordination.k8s.io/v1")
            item.setdefault("kind", "Lease")
            present.add(self.observe(item).record.name)
        for name in set(self._records) - present:
            self.forget(name)
        self._set_synced(True)
        return str(listing["metadata"]["resourceVersion"])

    async def _follow(self, version: str) -> str:
        """Apply events until the server ends the stream; return where to resume."""
        async for event in self._api.watch(version, self._settings.watch_timeout):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired
                raise Unavailable(f"watch error: {obj.get('message', obj)}")
            version = str(obj.get("metadata", {}).get("resourceVersion", version))
            if kind in ("ADDED", "MODIFIED"):
                self.observe(obj)
            elif kind == "DELETED":
                self.forget(str(obj["metadata"]["name"]))
            self._set_synced(True)
        return version


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""
