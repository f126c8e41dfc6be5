"""One replica's part in sharding, started and stopped as one: membership, a sharder candidate, drains."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes.aio import client

from lb_operator.mutex import LeaseMutex
from lb_operator.sharding.drain import Drainer
from lb_operator.sharding.members import Membership
from lb_operator.sharding.nudge import Nudger
from lb_operator.sharding.sharder import Sharder
from lb_operator.sharding.streams import Mirror

logger = logging.getLogger(__name__)


async def _supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run`` until cancelled; if it ever fails, log why and start it again: it must not die silently."""
    while True:
        try:
            await run()
        except Exception:
            logger.exception("%s failed; starting it again", name)
        await asyncio.sleep(1.0)


class Replica:
    """Start: join as a member, stand for sharder, let go of drained objects. Stop: the reverse.

    The member Lease is released last, so survivors take over this
    replica's objects the moment it is gone, not a lease duration later.
    """

    def __init__(
        self,
        api: client.ApiClient,
        mutex: LeaseMutex,
        identity: str,
        mirror: Mirror,
        nudge_interval: float = 30.0,
        leaving: Callable[[Mapping[str, Any], bool], None] = lambda body, going: None,
    ) -> None:
        self.identity = identity
        self.membership = Membership(mutex, identity)
        self.sharder = Sharder(api, mutex, mirror)
        self.drainer = Drainer(api, identity, mirror, leaving)
        self.nudger = Nudger(api, identity, mirror, self.drainer.busy, nudge_interval)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.membership.start()
        self._tasks = [
            asyncio.create_task(_supervised("sharder", self.sharder.run), name="sharder"),
            asyncio.create_task(_supervised("drainer", self.drainer.run), name="drainer"),
            asyncio.create_task(_supervised("nudger", self.nudger.run), name="nudger"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.membership.stop()
        logger.info("member %s: left", self.identity)
