"""One change per load balancer at a time, and the count of every change that arrived while another ran.

Why this exists: this is the behaviour the operator's Lease mutex is built
against. cloudscale applies one change at a time per load balancer and
Octavia answers 409 while a load balancer is PENDING_UPDATE; a simulator
that accepted concurrent changes would let a broken operator pass. The
overlap counter is the test oracle: with a correct operator it stays 0.

A change *holds* its load balancer from the moment it starts until it is
done — for a new load balancer, until it is ``running``. A change that
arrives meanwhile is an overlap: in ``reject`` mode it is refused
(``Overlap``), in ``serialize`` mode it waits its turn (FIFO). While it is
``busy``, the API shows the load balancer as ``changing``, as cloudscale does.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from lb_operator.simulator.settings import Mode


def _wall() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Change:
    """One mutation, as it appears in ``/debug/log``.

    ``arrived``, ``start`` and ``end`` are seconds on the simulator's
    monotonic clock (comparable with each other, not with wall time);
    ``arrived_at`` is the wall-clock time of arrival, for people. A rejected
    change has no ``start``. ``tags``: the object's tags once a create or
    update was applied (the tests follow the order of writes with them).
    """

    load_balancer: str
    kind: str
    op: str
    uuid: str | None
    arrived: float
    arrived_at: str = field(default_factory=_wall)
    start: float | None = None
    end: float | None = None
    outcome: str = "in flight"
    tags: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The log entry as JSON-ready data."""
        return asdict(self)


class Overlap(Exception):
    """The load balancer is busy with ``holder``; in ``reject`` mode the new change is refused."""

    def __init__(self, change: Change, holder: Change | None) -> None:
        doing = f"{holder.kind.replace('_', ' ')} {holder.op}" if holder else "another change"
        super().__init__(f"load balancer {change.load_balancer} is busy with {doing}")
        self.change = change
        self.holder = holder


class ChangeGate:
    """Admits one change per load balancer; counts, queues or rejects the others."""

    def __init__(self, mode: Mode, log_limit: int, on_change: Callable[[], None] = lambda: None) -> None:
        self.mode = mode
        self.mutations = 0
        self.overlaps = 0
        self.overlaps_by_load_balancer: Counter[str] = Counter()
        self.in_flight = 0
        self.queued = 0
        self.log: deque[Change] = deque(maxlen=log_limit)
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()
        self._holders: dict[str, Change] = {}
        self._on_change = on_change

    def busy(self, load_balancer: str) -> bool:
        """Whether a change holds ``load_balancer`` or queues for it: the API shows it as ``changing``.

        Queued changes count (a woken waiter may not have taken the lock
        yet), so in ``serialize`` mode it stays busy from the first change of
        a queue to the end of the last.
        """
        return self._users[load_balancer] > 0

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def enter(self, change: Change) -> None:
        """Start ``change`` once its load balancer is free; ``Overlap`` if it is busy in ``reject`` mode.

        Every ``enter`` that returns must be paired with one ``leave``.
        """
        key = change.load_balancer
        waiting = self.busy(key)
        if waiting:
            self.overlaps += 1
            self.overlaps_by_load_balancer[key] += 1
            if self.mode in ("reject", "async"):
                change.end = change.arrived
                change.outcome = "rejected: overlap"
                self.log.append(change)
                self._on_change()
                raise Overlap(change, self._holders.get(key))
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        if waiting:
            self.queued += 1
            self._on_change()
        try:
            await lock.acquire()
        except BaseException:
            self._forget(key)
            raise
        finally:
            if waiting:
                self.queued -= 1
        change.start = self._now()
        self._holders[key] = change
        self.mutations += 1
        self.in_flight += 1
        self._on_change()

    def leave(self, change: Change, outcome: str) -> None:
        """Finish ``change`` with ``outcome`` (``ok``, or the HTTP status it ended with); free its LB."""
        key = change.load_balancer
        change.end = self._now()
        change.outcome = outcome
        self.log.append(change)
        self.in_flight -= 1
        del self._holders[key]
        self._locks[key].release()
        self._forget(key)
        self._on_change()

    def _forget(self, key: str) -> None:
        # Locks of load balancers nobody is using are dropped, so the table does not grow forever.
        self._users[key] -= 1
        if self._users[key] <= 0:
            del self._users[key]
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]

    def stats(self) -> dict[str, Any]:
        """The counters of ``/debug/stats``."""
        return {
            "mode": self.mode,
            "mutations": self.mutations,
            "overlaps": self.overlaps,
            "overlaps_by_load_balancer": dict(self.overlaps_by_load_balancer),
            "in_flight": self.in_flight,
            "queued": self.queued,
        }
