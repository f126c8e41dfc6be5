"""Whether this process still sees the cluster: the watches it runs, and how recently each showed life.

Why: a watch over a half-open connection (the server gone, no FIN) stays
"connected" and silent, and the process goes blind while it looks healthy.
Each watch of this process reports a sign of life — an event, a bookmark,
or a stream the server ended on time — and ``stale()`` names those that
showed none within their bound. ``/healthz`` fails while any is stale, so
a replica that cannot see the cluster any more is restarted, not trusted.

Kopf's own watches are not in here: Kopf cuts a stream that delivered
nothing (not even a bookmark) for ``watching.inactivity_timeout`` and
opens it again, which bounds their blindness the same way.
"""

from __future__ import annotations

import asyncio


class WatchHealth:
    """Last sign of life per watch (loop time), and the bound each must keep."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._bounds: dict[str, float] = {}

    def alive(self, name: str, bound: float) -> None:
        """Watch ``name`` showed life now; it must again within ``bound`` seconds."""
        self._seen[name] = asyncio.get_running_loop().time()
        self._bounds[name] = bound

    def forget(self, name: str) -> None:
        """Watch ``name`` was stopped on purpose."""
        self._seen.pop(name, None)
        self._bounds.pop(name, None)

    def stale(self) -> dict[str, float]:
        """Watches silent past their bound → seconds since their last sign of life."""
        now = asyncio.get_running_loop().time()
        return {name: now - seen for name, seen in self._seen.items() if now - seen > self._bounds[name]}
