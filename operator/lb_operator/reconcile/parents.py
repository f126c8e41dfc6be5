"""Wake a child the moment its parent changes, instead of letting it poll with back-off.

It listens to the replica's ``Mirror`` (one watch per kind and watched
namespace, shared with the sharder and the drains), for the parent kinds
(LoadBalancer, LoadBalancerPool). Every replica sees every parent, so a
child waiting on a parent another replica owns is woken too.

This is a wake-up, not a cache: a woken child reads its parent again from
the API server, so a missed or duplicated event can only cost time (the
wait ends at its deadline anyway), never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from lb_operator.sharding.streams import Mirror

logger = logging.getLogger(__name__)

PARENT_KINDS = {"LoadBalancer": "loadbalancers", "LoadBalancerPool": "loadbalancerpools"}

Ref = tuple[str, str, str]
"""(kind, namespace, name) of a parent object."""


class ParentWatch:
    """Who waits for which parent, woken by the mirror's news of it."""

    def __init__(self, mirror: Mirror | None) -> None:
        self._mirror = mirror
        self._waiting: dict[Ref, asyncio.Event] = {}  # only refs someone waits on: bounded by waiters
        self._users: dict[Ref, int] = {}
        self._unlisten: Callable[[], None] | None = None
        self.wakes = 0

    def start(self) -> None:
        if self._mirror is not None and self._unlisten is None:
            self._unlisten = self._mirror.listen(self._on_event, on_gap=self.wake_all)

    async def stop(self) -> None:
        unlisten, self._unlisten = self._unlisten, None
        if unlisten is not None:
            unlisten()

    def _on_event(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        if kind not in PARENT_KINDS:
            return
        metadata = body.get("metadata") or {}
        self.wake((kind, str(metadata.get("namespace", "")), str(metadata.get("name", ""))))

    def wake(self, ref: Ref) -> None:
        """Wake everyone waiting on ``ref`` (it changed: it may be Ready now, or have a new cloud UUID)."""
        event = self._waiting.pop(ref, None)
        if event is not None:
            self.wakes += 1
            event.set()

    def wake_all(self) -> None:
        """The watch broke and events may be lost: every waiter looks again."""
        waiting, self._waiting = self._waiting, {}
        for event in waiting.values():
            event.set()

    @contextlib.contextmanager
    def expecting(self, ref: Ref | None) -> Iterator[asyncio.Event | None]:
        """Register interest in ``ref`` *before* reading it; the event is set when ``ref`` changes.

        Registering first means a change between the read and the wait is
        never lost. ``None`` when there is nothing to wait on: no ``ref`` (a parent named by cloud UUID),
        or no API (unit tests of the flow).
        """
        if ref is None or self._mirror is None:
            yield None
            return
        event = self._waiting.setdefault(ref, asyncio.Event())
        self._users[ref] = self._users.get(ref, 0) + 1
        try:
            yield event
        finally:
            self._users[ref] -= 1
            if self._users[ref] == 0:
                del self._users[ref]
                if self._waiting.get(ref) is event:
                    del self._waiting[ref]


async def until_set(event: asyncio.Event, deadline: float) -> bool:
    """Wait for ``event`` until ``deadline`` (event-loop time); ``True`` if it was set. Cancellable."""
    try:
        async with asyncio.timeout_at(deadline):
            await event.wait()
    except TimeoutError:
        return False
    return True
