"""Members: the replicas alive now, each known by a member Lease it holds through the Lease mutex.

A member Lease is an ordinary lock, key ``member/<identity>``, held for the
life of the replica: the mutex renews it, and every process judges whether
it is still held by its own monotonic clock (the mutex's rule), so one
frozen or dead replica drops out of every member list one lease duration
after its last renewal, and a replica that shuts down cleanly releases it
and drops out at once.
"""

from __future__ import annotations

import asyncio
import logging

from lb_operator.mutex import HoldLost, LeaseMutex, LockTimeout
from lb_operator.mutex.watch import LeaseWatch

logger = logging.getLogger(__name__)

MEMBER_PREFIX = "member/"
_FOREVER = 10 * 365 * 24 * 3600.0


def live_members(watch: LeaseWatch) -> dict[str, float]:
    """Member identity → when its lease expires (event-loop time), for every member held and not expired."""
    now = asyncio.get_running_loop().time()
    members: dict[str, float] = {}
    for name in watch.names():
        observed = watch.get(name)
        if observed is None:
            continue
        key = observed.record.key or ""
        if key.startswith(MEMBER_PREFIX) and observed.record.holder and now < observed.expires_at():
            members[key.removeprefix(MEMBER_PREFIX)] = observed.expires_at()
    return members


class Membership:
    """Holds this replica's member Lease until ``stop()``; re-takes it if it was ever lost."""

    def __init__(self, mutex: LeaseMutex, identity: str) -> None:
        self.identity = identity
        self._mutex = mutex
        self._task: asyncio.Task[None] | None = None
        self.held = asyncio.Event()
        self._out_since: float | None = None  # loop time since when it is not a member (None: it is)

    def start(self) -> None:
        if self._task is None:
            self._out_since = asyncio.get_running_loop().time()
            self._task = asyncio.create_task(self._hold_forever(), name=f"member {self.identity}")

    def out_for(self) -> float:
        """Seconds this replica has not been a member (0 while it is): cut off, or still joining."""
        if self._out_since is None or self._task is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._out_since

    async def stop(self) -> None:
        """Release the member Lease (survivors take over this replica's objects at once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _hold_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._mutex.hold(MEMBER_PREFIX + self.identity, deadline=loop.time() + _FOREVER):
                    self.held.set()
                    self._out_since = None
                    logger.info("member %s: joined", self.identity)
                    await asyncio.Future()  # until cancelled (stop) or the hold is lost
            except (HoldLost, LockTimeout) as error:
                logger.warning("member %s: %s; joining again", self.identity, error)
            finally:
                self.held.clear()
                if self._out_since is None:
                    self._out_since = loop.time()
