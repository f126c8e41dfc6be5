"""The one interface the operator uses to drive a cloud load-balancer API.

Why a Protocol: reconcile code must not know which cloud it talks to, and a
test must be able to hand it any object with these methods. Every method is
a coroutine that can be cancelled at any point; none of them retries on its
own — the caller decides (``Busy`` is retriable, ``Invalid`` is not).

Conventions for every kind:

- ``create_*`` returns the object as the API created it (a load balancer
  starts ``changing`` and becomes ``running`` later).
- ``update_*`` sends only the fields set on the ``*Update`` model; an update
  with nothing set sends no request.
- ``delete_*`` of an object that is already gone succeeds.
- ``list_*`` with ``tags`` returns the objects carrying at least those tags.

Members live under their pool, so their methods take the pool's UUID.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from lb_operator.cloud.models import (
    HealthMonitor,
    HealthMonitorSpec,
    HealthMonitorUpdate,
    Listener,
    ListenerSpec,
    ListenerUpdate,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerUpdate,
    Member,
    MemberSpec,
    MemberUpdate,
    Pool,
    PoolSpec,
    PoolUpdate,
)


class Backend(Protocol):
    """Create, read, update, delete and list the five kinds. Errors: ``lb_operator.cloud.errors``."""

    async def create_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancer:
        """Create a load balancer; it is ``changing`` until the cloud has built it."""
        ...

    async def get_load_balancer(self, uuid: str) -> LoadBalancer:
        """Read a load balancer; ``NotFound`` if it does not exist."""
        ...

    async def update_load_balancer(self, uuid: str, changes: LoadBalancerUpdate) -> None:
        """Change a load balancer's name and/or tags."""
        ...

    async def delete_load_balancer(self, uuid: str) -> None:
        """Delete a load balancer and, with it, all its children."""
        ...

    async def list_load_balancers(self, tags: Mapping[str, str] | None = None) -> list[LoadBalancer]:
        """All load balancers, or those carrying ``tags``."""
        ...

    async def create_pool(self, spec: PoolSpec) -> Pool:
        """Create a pool on ``spec.load_balancer``."""
        ...

    async def get_pool(self, uuid: str) -> Pool:
        """Read a pool."""
        ...

    async def update_pool(self, uuid: str, changes: PoolUpdate) -> None:
        """Change a pool's name and/or tags."""
        ...

    async def delete_pool(self, uuid: str) -> None:
        """Delete a pool."""
        ...

    async def list_pools(self, tags: Mapping[str, str] | None = None) -> list[Pool]:
        """All pools, or those carrying ``tags``."""
        ...

    async def create_member(self, pool: str, spec: MemberSpec) -> Member:
        """Add a member to ``pool``."""
        ...

    async def get_member(self, pool: str, uuid: str) -> Member:
        """Read a member of ``pool``."""
        ...

    async def update_member(self, pool: str, uuid: str, changes: MemberUpdate) -> None:
        """Change a member's name, ``enabled`` and/or tags."""
        ...

    async def delete_member(self, pool: str, uuid: str) -> None:
        """Remove a member from ``pool``."""
        ...

    async def list_members(self, pool: str, tags: Mapping[str, str] | None = None) -> list[Member]:
        """The members of ``pool``, or those carrying ``tags``."""
        ...

    async def create_listener(self, spec: ListenerSpec) -> Listener:
        """Create a listener for ``spec.pool``."""
        ...

    async def get_listener(self, uuid: str) -> Listener:
        """Read a listener."""
        ...

    async def update_listener(self, uuid: str, changes: ListenerUpdate) -> None:
        """Change a listener (anything but its pool)."""
        ...

    async def delete_listener(self, uuid: str) -> None:
        """Delete a listener."""
        ...

    async def list_listeners(self, tags: Mapping[str, str] | None = None) -> list[Listener]:
        """All listeners, or those carrying ``tags``."""
        ...

    async def create_health_monitor(self, spec: HealthMonitorSpec) -> HealthMonitor:
        """Create the health monitor of ``spec.pool`` (one per pool)."""
        ...

    async def get_health_monitor(self, uuid: str) -> HealthMonitor:
        """Read a health monitor."""
        ...

    async def update_health_monitor(self, uuid: str, changes: HealthMonitorUpdate) -> None:
        """Change a health monitor's timings, thresholds, HTTP options and/or tags."""
        ...

    async def delete_health_monitor(self, uuid: str) -> None:
        """Delete a health monitor."""
        ...

    async def list_health_monitors(self, tags: Mapping[str, str] | None = None) -> list[HealthMonitor]:
        """All health monitors, or those carrying ``tags``."""
        ...
