"""The drift check's view of the cloud: one list per kind (members: per pool) per interval, shared.

Why: a drift check that read each object on its own cost one cloud read per
object per ``LBOP_RESYNC_INTERVAL`` — at 10,000 objects and a 300 s interval,
33 reads a second against a rate-limited API, nearly all of them to learn
that nothing changed. Here a check looks its object up in lists of its kind
that are at most ``max_age`` old (read when the first check of an interval
needs them, by one request, however many checks wait for it): about one list
per kind, and one per pool for members, per interval and replica.

A list answers only "nothing to do": an object found in it in sync with its
spec and with the status it already has. Anything else — not in the list
(made since), owned by another object, drifted, a status to refresh — is read
afresh and handled as before, so a list never causes a change or a status
write of its own, and what it costs is detection: drift made after a list
was read is seen at the next check, up to one interval later than a fresh
read would have seen it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lb_operator.cloud import Backend


class _Listed(Protocol):
    @property
    def uuid(self) -> str: ...


@dataclass
class _List:
    read_at: float
    by_uuid: dict[str, Any]


_LISTERS = {
    "LoadBalancer": "list_load_balancers",
    "LoadBalancerPool": "list_pools",
    "LoadBalancerListener": "list_listeners",
    "LoadBalancerHealthMonitor": "list_health_monitors",
}
"""The backend's list of every object of a kind (members are listed per pool)."""


class CloudSnapshot:
    """Lists of cloud objects by (kind, scope), each reused for ``max_age`` seconds; reads counted."""

    def __init__(self, cloud: Backend, max_age: float) -> None:
        self._cloud = cloud
        self.max_age = max_age
        self._lists: dict[tuple[str, str], _List] = {}
        self._reading: dict[tuple[str, str], asyncio.Future[_List]] = {}
        self.reads = 0

    def _lister(self, kind: str, scope: str) -> Callable[[], Awaitable[Sequence[_Listed]]] | None:
        cloud = self._cloud
        if kind == "LoadBalancerPoolMember":
            return (lambda: cloud.list_members(scope)) if scope else None
        name = _LISTERS.get(kind)
        lister: Callable[[], Awaitable[Sequence[_Listed]]] | None = getattr(cloud, name) if name else None
        return lister

    async def lookup(self, kind: str, uuid: str, scope: str = "") -> Any | None:
        """The cloud object ``uuid`` of ``kind`` (``scope``: a member's pool) as last listed, or ``None``
        when the list does not hold it. Errors of the read propagate (the caller reads afresh)."""
        listed = await self._list(kind, scope if kind == "LoadBalancerPoolMember" else "")
        return listed.by_uuid.get(uuid) if listed is not None else None

    async def _list(self, kind: str, scope: str) -> _List | None:
        lister = self._lister(kind, scope)
        if lister is None:
            return None
        key, loop = (kind, scope), asyncio.get_running_loop()
        known = self._lists.get(key)
        if known is not None and loop.time() - known.read_at < self.max_age:
            return known
        reading = self._reading.get(key)
        if reading is None:  # its own task: a check cancelled while waiting does not cancel it for the rest
            reading = self._reading[key] = asyncio.ensure_future(self._read(key, lister))
            reading.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
        return await asyncio.shield(reading)

    async def _read(self, key: tuple[str, str], lister: Callable[[], Awaitable[Sequence[_Listed]]]) -> _List:
        try:
            self.reads += 1
            read_at = asyncio.get_running_loop().time()
            found = self._lists[key] = _List(read_at, {item.uuid: item for item in await lister()})
            return found
        finally:
            self._reading.pop(key, None)
