"""Raw HTTP to the simulator (so its wire contract is tested without the client), and instant test data."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from lb_operator.simulator import Simulator
from lb_operator.simulator.store import Kind, new_uuid
from lb_operator.simulator.validation import HEALTH_MONITOR, LISTENER, LOAD_BALANCER, MEMBER, POOL, validate

SUBNET = "2e5a7f4c-95a3-4cbb-8d1e-0b6a4c3f1d2e"


@dataclass
class Api:
    """One simulator's API over HTTP: ``(status, decoded body)`` for every call."""

    http: aiohttp.ClientSession
    url: str  # http://host:port/v1
    token: str | None = None

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {}
        if (token or self.token) is not None:
            headers["Authorization"] = f"Bearer {token or self.token}"
        # "/debug/stats" is relative to the server, "load-balancers" to the API's /v1.
        url = self.url.removesuffix("/v1") + path if path.startswith("/") else f"{self.url}/{path}"
        async with self.http.request(method, url, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body)

    async def patch(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, body)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)

    async def stats(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/debug/stats")
        assert status == 200, body
        return dict(body)

    async def log(self) -> list[dict[str, Any]]:
        status, body = await self.call("GET", "/debug/log")
        assert status == 200, body
        return list(body)


def pool_body(load_balancer: str, name: str = "pool") -> dict[str, Any]:
    return {"name": name, "load_balancer": load_balancer, "algorithm": "round_robin", "protocol": "tcp"}


@dataclass
class Seeded:
    """UUIDs of a complete, running load balancer put straight into a simulator's store."""

    load_balancer: str
    pool: str
    member: str
    listener: str
    health_monitor: str


def seed(sim: Simulator, name: str = "web") -> Seeded:
    """A running load balancer with a pool, a member, a listener and a health monitor, made instantly.

    Goes through the simulator's own validation (for the defaults), but not
    through HTTP: setting up costs no simulated latency.
    """

    def put(kind: Kind, schema: Any, body: dict[str, Any], pool: str | None = None) -> str:
        values, errors = validate(schema, body, partial=False)
        assert not errors, errors
        uuid = new_uuid()
        sim.store.create(kind, values, uuid, pool)
        return uuid

    lb = put("load_balancer", LOAD_BALANCER, {"name": name, "flavor": "lb-standard", "zone": "lpg1"})
    sim.store.set_status(lb, "running")
    pool = put("pool", POOL, pool_body(lb))
    member = put(
        "member", MEMBER, {"name": "m", "protocol_port": 80, "address": "10.0.0.5", "subnet": SUBNET}, pool
    )
    listener = put("listener", LISTENER, {"name": "l", "pool": pool, "protocol": "tcp", "protocol_port": 80})
    monitor = put("health_monitor", HEALTH_MONITOR, {"pool": pool, "type": "tcp"})
    return Seeded(lb, pool, member, listener, monitor)


StartSimulator = Callable[..., Awaitable[tuple[Simulator, Api]]]
"""The ``start_simulator`` fixture: ``await start_simulator(**settings)`` → (simulator, its API)."""
