"""An async client for the cloudscale.ch v1 load-balancer API (and the simulator, which speaks it too).

Why not one ``aiohttp`` call per handler: a client owns a connection pool
for one account, so every handler of the process must share one instance
(as dnscontrol's providers are one object per account, never copied).
Copying it would copy an open pool; ``copy.copy`` and ``pickle`` raise
instead. The object holds nothing else that changes, so concurrent calls
from many tasks are safe.

What the plain ``aiohttp`` call lacks and this adds: a bound on every
request, the API's answers mapped onto ``Invalid`` / ``NotFound`` / ``Busy``
/ ``Unauthorized`` with the API's own messages, deletes that succeed when
the object is gone, a token file that is re-read when the Secret behind it
is rotated, and a token that never reaches a log line, an exception or a
``repr``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from lb_operator.cloud.errors import CloudError, NotFound, Unauthorized
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
from lb_operator.cloud.settings import CloudscaleSettings
from lb_operator.cloud.transport import Answer, OneInstance, Transport, decoded, parsed, segment

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_LOAD_BALANCERS = "load-balancers"
_POOLS = "load-balancers/pools"
_LISTENERS = "load-balancers/listeners"
_HEALTH_MONITORS = "load-balancers/health-monitors"

_MAX_DETAIL = 500
DEFAULT_FLAVOR = "lb-standard"
"""The flavor of a load balancer whose spec names none."""


def _members(pool: str) -> str:
    return f"{_POOLS}/{segment(pool)}/members"


def _flatten(prefix: str, value: Any, into: dict[str, list[str]]) -> None:
    """Collect field messages from DRF-style bodies, nested or not, under dotted names."""
    if isinstance(value, str):
        into.setdefault(prefix, []).append(value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                _flatten(f"{prefix}[{index}]", item, into)
            else:
                into.setdefault(prefix, []).append(str(item))
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into)
    elif value is not None:
        into.setdefault(prefix, []).append(str(value))


def _read_error(payload: bytes) -> tuple[dict[str, list[str]], str | None]:
    """Split an error body into field messages and a general detail.

    cloudscale answers ``{"detail": "..."}`` or ``{field: message}``; the Go
    SDK reads messages as strings, Django REST framework (which the API's
    shapes follow) sends lists: both are accepted.
    """
    text = payload.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        return {}, text[:_MAX_DETAIL] or None
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key in ("detail", "non_field_errors"):
                _flatten("", value, fields)
                general.extend(fields.pop("", []))
            else:
                _flatten(str(key), value, fields)
    elif body is not None:
        _flatten("", body, fields)
        general.extend(fields.pop("", []))
    detail = " ".join(general)[:_MAX_DETAIL] or None
    return fields, detail


class CloudscaleClient(OneInstance):
    """One cloudscale.ch account: a shared connection pool and the calls of the ``Backend`` protocol.

    Use one per account for the whole process::

        settings = CloudscaleSettings(token_file=Path("/var/run/secrets/cloudscale/token"))
        async with CloudscaleClient(settings) as cloud:
            lb = await cloud.create_load_balancer(LoadBalancerSpec(name="web", zone="lpg1"))

    or ``await cloud.open()`` at start-up and ``await cloud.close()`` at
    shutdown when a context manager does not fit (Kopf's startup/cleanup).
    """

    def __init__(self, settings: CloudscaleSettings) -> None:
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._transport = Transport(
            settings.base_url, settings.request_timeout, settings.connect_timeout, settings.connection_limit
        )
        self._token: SecretStr | None = None
        self._token_stamp: tuple[int, int, int] | None = None
        self._token_checked_at = 0.0

    def __repr__(self) -> str:
        state = "open" if self._transport.is_open else "closed"
        return f"<CloudscaleClient {self._base} {state}>"

    @property
    def settings(self) -> CloudscaleSettings:
        """The settings this client was built with (the token in them is a ``SecretStr``)."""
        return self._settings

    async def open(self) -> None:
        """Read the token and open the connection pool. Raises ``ValueError`` if there is no token."""
        if self._transport.is_open:
            raise RuntimeError("this CloudscaleClient is already open; share it instead of opening it again")
        self._token_stamp = await asyncio.to_thread(self._settings.token_stamp)
        self._token = await asyncio.to_thread(self._settings.read_token)
        self._token_checked_at = asyncio.get_running_loop().time()
        self._transport.open()

    async def close(self) -> None:
        """Close the connection pool. Calls made after this raise ``RuntimeError``."""
        self._token = None
        await self._transport.close()

    async def __aenter__(self) -> CloudscaleClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- one request ---------------------------------------------------------------------------

    async def _current_token(self, *, now: bool = False) -> SecretStr:
        """The token, re-read from ``token_file`` when the file changed (checked every ``token_recheck`` s,
        or ``now``). A file that cannot be read keeps the token in use, with a warning."""
        token = self._token
        if token is None:
            raise RuntimeError("the CloudscaleClient is not open; use `async with` or await open() first")
        loop = asyncio.get_running_loop()
        if self._settings.token_file is None:
            return token
        if not now and loop.time() - self._token_checked_at < self._settings.token_recheck:
            return token
        self._token_checked_at = loop.time()
        stamp = await asyncio.to_thread(self._settings.token_stamp)
        if stamp is None or stamp == self._token_stamp:
            return token
        try:
            fresh = await asyncio.to_thread(self._settings.read_token)
        except ValueError as error:
            logger.warning("keeping the API token in use: %s", error)
            return token
        if self._token is not None:  # not closed meanwhile
            self._token, self._token_stamp = fresh, stamp
            if fresh.get_secret_value() != token.get_secret_value():
                logger.info("read a new API token from %s", self._settings.token_file)
        return fresh

    async def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON (``None`` for an empty answer), or raise.

        A refused token (401/403) is re-read from its file at once; if it
        changed, the request is sent once more with the new one.
        """
        token = await self._current_token()
        operation = f"{what} ({method} {path})"
        answer = await self._send(operation, method, path, token, body, params)
        if answer.status in (401, 403):
            fresh = await self._current_token(now=True)
            if fresh.get_secret_value() != token.get_secret_value():
                answer = await self._send(operation, method, path, fresh, body, params)
        if answer.status in (401, 403):
            detail = _read_error(answer.payload)[1]
            raise Unauthorized(operation, answer.status, detail or answer.reason or None)
        return decoded(operation, answer, _read_error)

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        token: SecretStr,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        return await self._transport.send(operation, method, path, headers, body, params)

    # --- the five operations, once for every kind ----------------------------------------------

    async def _create(self, kind: str, path: str, body: dict[str, Any], model: type[M]) -> M:
        what = f"create {kind}"
        return parsed(what, model, await self._request(what, "POST", path, body=body))

    async def _get(self, kind: str, path: str, model: type[M]) -> M:
        what = f"get {kind}"
        return parsed(what, model, await self._request(what, "GET", path))

    async def _update(self, kind: str, path: str, body: dict[str, Any]) -> None:
        if body:
            await self._request(f"update {kind}", "PATCH", path, body=body)

    async def _delete(self, kind: str, path: str) -> None:
        try:
            await self._request(f"delete {kind}", "DELETE", path)
        except NotFound:
            return  # gone already: that is what delete asked for

    async def _list(self, kind: str, path: str, tags: Mapping[str, str] | None, model: type[M]) -> list[M]:
        what = f"list {kind}s"
        params = {f"tag:{key}": value for key, value in (tags or {}).items()}
        data = await self._request(what, "GET", path, params=params or None)
        if not isinstance(data, list):
            raise CloudError(f"{what}: the API answered {type(data).__name__} where a list belongs")
        return [parsed(what, model, item) for item in data]

    # --- load balancers ------------------------------------------------------------------------

    async def create_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancer:
        """Create a load balancer; it is ``changing`` until the cloud has built it."""
        body = {"flavor": DEFAULT_FLAVOR, **spec.body()}
        return await self._create("load balancer", _LOAD_BALANCERS, body, LoadBalancer)

    async def get_load_balancer(self, uuid: str) -> LoadBalancer:
        """Read a load balancer."""
        return await self._get("load balancer", f"{_LOAD_BALANCERS}/{segment(uuid)}", LoadBalancer)

    async def update_load_balancer(self, uuid: str, changes: LoadBalancerUpdate) -> None:
        """Change a load balancer's name and/or tags."""
        await self._update("load balancer", f"{_LOAD_BALANCERS}/{segment(uuid)}", changes.body())

    async def delete_load_balancer(self, uuid: str) -> None:
        """Delete a load balancer with all its children; success if it is gone already."""
        await self._delete("load balancer", f"{_LOAD_BALANCERS}/{segment(uuid)}")

    async def list_load_balancers(self, tags: Mapping[str, str] | None = None) -> list[LoadBalancer]:
        """All load balancers, or those carrying ``tags``."""
        return await self._list("load balancer", _LOAD_BALANCERS, tags, LoadBalancer)

    # --- pools ---------------------------------------------------------------------------------

    async def create_pool(self, spec: PoolSpec) -> Pool:
        """Create a pool on ``spec.load_balancer``."""
        return await self._create("pool", _POOLS, spec.body(), Pool)

    async def get_pool(self, uuid: str) -> Pool:
        """Read a pool."""
        return await self._get("pool", f"{_POOLS}/{segment(uuid)}", Pool)

    async def update_pool(self, uuid: str, changes: PoolUpdate) -> None:
        """Change a pool's name and/or tags."""
        await self._update("pool", f"{_POOLS}/{segment(uuid)}", changes.body())

    async def delete_pool(self, uuid: str) -> None:
        """Delete a pool; success if it is gone already."""
        await self._delete("pool", f"{_POOLS}/{segment(uuid)}")

    async def list_pools(self, tags: Mapping[str, str] | None = None) -> list[Pool]:
        """All pools, or those carrying ``tags``."""
        return await self._list("pool", _POOLS, tags, Pool)

    # --- pool members (nested under their pool) ------------------------------------------------

    async def create_member(self, pool: str, spec: MemberSpec) -> Member:
        """Add a member to ``pool``."""
        return await self._create("pool member", _members(pool), spec.body(), Member)

    async def get_member(self, pool: str, uuid: str) -> Member:
        """Read a member of ``pool``."""
        return await self._get("pool member", f"{_members(pool)}/{segment(uuid)}", Member)

    async def update_member(self, pool: str, uuid: str, changes: MemberUpdate) -> None:
        """Change a member's name, ``enabled`` and/or tags."""
        await self._update("pool member", f"{_members(pool)}/{segment(uuid)}", changes.body())

    async def delete_member(self, pool: str, uuid: str) -> None:
        """Remove a member; success if it (or its pool) is gone already."""
        await self._delete("pool member", f"{_members(pool)}/{segment(uuid)}")

    async def list_members(self, pool: str, tags: Mapping[str, str] | None = None) -> list[Member]:
        """The members of ``pool``, or those carrying ``tags``."""
        return await self._list("pool member", _members(pool), tags, Member)

    # --- listeners -----------------------------------------------------------------------------

    async def create_listener(self, spec: ListenerSpec) -> Listener:
        """Create a listener for ``spec.pool``."""
        return await self._create("listener", _LISTENERS, spec.body(), Listener)

    async def get_listener(self, uuid: str) -> Listener:
        """Read a listener."""
        return await self._get("listener", f"{_LISTENERS}/{segment(uuid)}", Listener)

    async def update_listener(self, uuid: str, changes: ListenerUpdate) -> None:
        """Change a listener (anything but its pool)."""
        await self._update("listener", f"{_LISTENERS}/{segment(uuid)}", changes.body())

    async def delete_listener(self, uuid: str) -> None:
        """Delete a listener; success if it is gone already."""
        await self._delete("listener", f"{_LISTENERS}/{segment(uuid)}")

    async def list_listeners(self, tags: Mapping[str, str] | None = None) -> list[Listener]:
        """All listeners, or those carrying ``tags``."""
        return await self._list("listener", _LISTENERS, tags, Listener)

    # --- health monitors -----------------------------------------------------------------------

    async def create_health_monitor(self, spec: HealthMonitorSpec) -> HealthMonitor:
        """Create the health monitor of ``spec.pool`` (one per pool)."""
        return await self._create("health monitor", _HEALTH_MONITORS, spec.body(), HealthMonitor)

    async def get_health_monitor(self, uuid: str) -> HealthMonitor:
        """Read a health monitor."""
        return await self._get("health monitor", f"{_HEALTH_MONITORS}/{segment(uuid)}", HealthMonitor)

    async def update_health_monitor(self, uuid: str, changes: HealthMonitorUpdate) -> None:
        """Change a health monitor's timings, thresholds, HTTP options and/or tags."""
        await self._update("health monitor", f"{_HEALTH_MONITORS}/{segment(uuid)}", changes.body())

    async def delete_health_monitor(self, uuid: str) -> None:
        """Delete a health monitor; success if it is gone already."""
        await self._delete("health monitor", f"{_HEALTH_MONITORS}/{segment(uuid)}")

    async def list_health_monitors(self, tags: Mapping[str, str] | None = None) -> list[HealthMonitor]:
        """All health monitors, or those carrying ``tags``."""
        return await self._list("health monitor", _HEALTH_MONITORS, tags, HealthMonitor)
