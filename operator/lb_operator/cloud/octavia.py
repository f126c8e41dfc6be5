"""An async client for OpenStack Octavia's v2 load-balancer API, behind the same ``Backend`` protocol.

Octavia has the problem this operator exists for in its plainest form: it
locks each load-balancer tree itself, and a change under a load balancer
that is ``PENDING_*`` is answered **409** "… is immutable and cannot be
updated." Here that is ``Busy`` (retry later), and ``PENDING_*`` is
``changing``: the reconcile flow already waits, under the tree's lock, for
the load balancer to stop ``changing`` before it mutates anything, so the
operator's own changes never meet that 409.

What this module translates, both ways, so reconcile code never knows:

- Paths and bodies: ``/v2/lbaas/{loadbalancers,pools,listeners,healthmonitors}``,
  members under ``pools/{id}/members``; bodies wrapped in the kind's name.
- Statuses: ``provisioning_status`` ``PENDING_*`` → ``changing``, ``ACTIVE`` →
  ``running``, ``ERROR`` → ``error`` (the Degraded path); a member's
  ``operating_status`` → ``monitor_status`` (``ONLINE`` → ``up`` …).
- Names of things: ``tcp`` ↔ ``TCP``, ``round_robin`` ↔ ``ROUND_ROBIN``,
  ``delay_s`` ↔ ``delay``, ``up_threshold`` ↔ ``max_retries``, expected codes
  ``["200", "202"]`` ↔ ``"200,202"``.
- Tags: a ``{key: value}`` map here, a list of strings there (``key=value``);
  Octavia filters lists by them (``?tags=``), so finding an object by its
  Kubernetes UID after a lost answer works as it does on cloudscale.
- Parents: Octavia's member and health-monitor answers do not name their
  load balancer, and a listener is created on a load balancer, not a pool:
  the pool's load balancer is read once and remembered (it never changes).

What Octavia cannot do is refused before any request, with what to do
instead (``Invalid``): a second VIP, a VIP without a subnet, and changing a
listener's protocol or port (Octavia keeps them for the listener's life).
A load balancer is deleted with ``cascade=true``, as cloudscale deletes
one with its children.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from ipaddress import ip_address
from types import TracebackType
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from lb_operator.cloud.credentials import Credentials
from lb_operator.cloud.errors import Busy, CloudError, Invalid, NotFound, Unauthorized
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
from lb_operator.cloud.settings import OctaviaSettings
from lb_operator.cloud.transport import Answer, OneInstance, Transport, decoded, parsed, segment, tls_context

logger = logging.getLogger(__name__)


_LBAAS = "v2/lbaas"
_MAX_DETAIL = 500

MONITOR_DEFAULTS = {"delay": 2, "timeout": 1, "max_retries": 2, "max_retries_down": 3}
"""Octavia requires delay, timeout and max_retries; these are cloudscale's defaults, so one spec means
the same on either cloud."""

_PROVISIONING = {"ACTIVE": "running", "ERROR": "error", "DELETED": "deleted"}
_MONITOR_STATUS = {
    "ONLINE": "up",
    "ERROR": "down",
    "OFFLINE": "down",
    "DRAINING": "down",
    "NO_MONITOR": "no_monitor",
}
_TIMEOUTS = {
    "timeout_client_data_ms": "timeout_client_data",
    "timeout_member_connect_ms": "timeout_member_connect",
    "timeout_member_data_ms": "timeout_member_data",
}


def tags_out(tags: Mapping[str, str]) -> list[str]:
    """Our ``{key: value}`` tags as Octavia's strings (``key=value``; a key alone when its value is empty)."""
    return [f"{key}={value}" if value else key for key, value in tags.items()]


def tags_in(tags: list[str] | None) -> dict[str, str]:
    """Octavia's tag strings as ``{key: value}``, split at the first ``=`` (none: the value is ``""``)."""
    found: dict[str, str] = {}
    for tag in tags or []:
        key, _, value = tag.partition("=")
        found[key] = value
    return found


def status_in(provisioning: str | None) -> str:
    """Octavia's ``provisioning_status`` as the protocol's status: ``PENDING_*`` is ``changing``."""
    if provisioning is None:
        return "changing"
    if provisioning.startswith("PENDING_"):
        return "changing"
    return _PROVISIONING.get(provisioning, provisioning.lower())


def _read_error(payload: bytes) -> tuple[dict[str, list[str]], str | None]:
    """Octavia answers ``{"faultcode", "faultstring", "debuginfo"}``; anything else is kept as text."""
    text = payload.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        return {}, text[:_MAX_DETAIL] or None
    if isinstance(body, dict):
        said = body.get("faultstring") or body.get("description") or body.get("message")
        if said:
            return {}, str(said)[:_MAX_DETAIL]
    return {}, text[:_MAX_DETAIL] or None


def _transient_conflict(detail: str) -> bool:
    """Octavia's 409s that mean "not now": the tree is PENDING_* ("… is immutable …", "Invalid state")."""
    return "immutable" in detail or "Invalid state" in detail or not detail


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


class OctaviaClient(OneInstance):
    """One Octavia project: a shared connection pool, its credentials, and the calls of ``Backend``.

    Like the cloudscale client: one per process, opened at start-up
    (``await open()``) and closed at shutdown, never copied.
    """

    def __init__(self, settings: OctaviaSettings, credentials: Credentials) -> None:
        self._settings = settings
        self._credentials = credentials
        self._transport = Transport(
            settings.base_url or "http://unset.invalid",
            settings.request_timeout,
            settings.connect_timeout,
            settings.connection_limit,
            untrusted="; if Octavia's CA is a private one, name its bundle in OS_CACERT (clouds.yaml: "
            "cacert)",
        )
        self._endpoint: str | None = None
        self._load_balancer_of_pool: dict[str, str] = {}

    def __repr__(self) -> str:
        state = "open" if self._transport.is_open else "closed"
        return f"<OctaviaClient {self._endpoint or self._settings.base_url or '(from the catalog)'} {state}>"

    @property
    def endpoint(self) -> str | None:
        """The load-balancer endpoint in use (set, or found in the service catalog at ``open``)."""
        return self._endpoint

    async def open(self) -> None:
        """Authenticate (if configured), find the endpoint, open the connection pool.

        Raises ``ValueError`` for a configuration that cannot work (no endpoint, no project).
        """
        if self._transport.is_open:
            raise RuntimeError("this OctaviaClient is already open; share it instead of opening it again")
        ca_file = self._settings.ca_file
        tls = await asyncio.to_thread(tls_context, ca_file) if ca_file is not None else None
        catalog = await self._credentials.open()
        endpoint = self._settings.base_url or catalog
        if not endpoint:
            raise ValueError(
                "no Octavia endpoint: set LBOP_CLOUD_URL, or Keystone credentials whose catalog has a "
                "load-balancer service"
            )
        self._endpoint = endpoint.rstrip("/").removesuffix("/v2")
        self._transport.open(tls)

    async def close(self) -> None:
        await self._transport.close()
        await self._credentials.close()

    async def __aenter__(self) -> OctaviaClient:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- one request ---------------------------------------------------------------------------

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

        A refused token (401) is dropped and the request sent once more with a fresh one.
        """
        operation = f"{what} ({method} /{path})"
        headers = await self._credentials.headers()
        answer = await self._send(operation, method, path, headers, body, params)
        if answer.status == 401 and await self._credentials.refused(headers):
            answer = await self._send(
                operation, method, path, await self._credentials.headers(), body, params
            )
        detail = _read_error(answer.payload)[1] or ""
        if answer.status == 403 and "quota" in detail.lower():  # Octavia's QuotaException is a 403
            raise Busy(operation, f"{detail} (free some, or have the project's quota raised)", 403)
        if answer.status == 409 and not _transient_conflict(detail):
            # Octavia's 409 is also "already exists" (a listener port taken, a second monitor): not busy.
            raise Invalid(operation, 409, detail=detail)
        if answer.status == 501:  # the provider cannot do it (an algorithm it lacks): no retry helps
            raise Invalid(operation, 501, detail=detail, advice="choose what this Octavia provider supports")
        if answer.status in (401, 403):
            raise Unauthorized(
                operation,
                answer.status,
                detail or answer.reason or None,
                credential="the Keystone token",
                advice=self._credentials.advice,
            )
        return decoded(operation, answer, _read_error)

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> Answer:
        return await self._transport.send(operation, method, path, headers, body, params, self._endpoint)

    async def _create(self, kind: str, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        what = f"create {kind}"
        return _unwrap(what, key, await self._request(what, "POST", path, body={key: body}))

    async def _get(self, kind: str, path: str, key: str) -> dict[str, Any]:
        what = f"get {kind}"
        found = _unwrap(what, key, await self._request(what, "GET", path))
        if found.get("provisioning_status") == "DELETED":  # a deleted load balancer may still be read
            raise NotFound(f"{what} (GET /{path})", "it is DELETED")
        return found

    async def _update(self, kind: str, path: str, key: str, body: dict[str, Any]) -> None:
        if body:
            await self._request(f"update {kind}", "PUT", path, body={key: body})

    async def _delete(self, kind: str, path: str, params: Mapping[str, str] | None = None) -> None:
        try:
            await self._request(f"delete {kind}", "DELETE", path, params=params)
        except NotFound:
            return  # gone already: that is what delete asked for

    async def _list(
        self, kind: str, path: str, key: str, tags: Mapping[str, str] | None
    ) -> list[dict[str, Any]]:
        """Every page of a list (Octavia pages by ``marker``), filtered by ``tags`` (all of them)."""
        what = f"list {kind}s"
        params: dict[str, str] = {"tags": ",".join(tags_out(tags))} if tags else {}
        found: list[dict[str, Any]] = []
        while True:
            try:
                data = await self._request(what, "GET", path, params=params or None)
            except Invalid as error:
                if "marker" not in str(error):
                    raise
                # The last object of the page before was deleted meanwhile: list again, later.
                raise Busy(
                    f"{what} (GET /{path})", "a page's marker was deleted while listing", 400
                ) from None
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise CloudError(f"{what}: Octavia answered without a list of {key}")
            # Filtered here too: an Octavia that does not filter by tags (``allow_filtering``) would
            # otherwise hand back another object as ours.
            page = [
                item
                for item in data[key]
                if item.get("provisioning_status") != "DELETED" and _carries(item, tags or {})
            ]
            found += page
            following = [link for link in data.get(f"{key}_links") or [] if link.get("rel") == "next"]
            if not following or not data[key]:
                return found
            params = {**params, "marker": str(data[key][-1]["id"])}

    # --- translations --------------------------------------------------------------------------

    def _load_balancer_in(self, data: dict[str, Any]) -> LoadBalancer:
        vips = []
        if data.get("vip_address"):
            address = str(data["vip_address"])
            vips.append(
                {
                    "version": ip_address(address).version,
                    "address": address,
                    "subnet": {"uuid": data.get("vip_subnet_id") or ""},
                }
            )
        shaped = {
            "uuid": data.get("id"),
            "name": data.get("name") or "",
            "flavor": {"slug": data.get("flavor_id") or ""},
            "zone": {"slug": data.get("availability_zone") or ""},
            "status": status_in(data.get("provisioning_status")),
            "vip_addresses": vips,
            "tags": tags_in(data.get("tags")),
            "created_at": data.get("created_at"),
        }
        return parsed("read load balancer", LoadBalancer, shaped)

    def _pool_in(self, data: dict[str, Any]) -> Pool:
        load_balancer = _first_id(data.get("loadbalancers"))
        if data.get("id") and load_balancer:
            self._load_balancer_of_pool[str(data["id"])] = load_balancer
        shaped = {
            "uuid": data.get("id"),
            "name": data.get("name") or "",
            "load_balancer": {"uuid": load_balancer},
            "algorithm": str(data.get("lb_algorithm", "")).lower(),
            "protocol": str(data.get("protocol", "")).lower(),
            "tags": tags_in(data.get("tags")),
            "created_at": data.get("created_at"),
        }
        return parsed("read pool", Pool, shaped)

    async def _load_balancer_of(self, pool: str) -> str:
        """The load balancer of ``pool``: remembered from any read of it, else read once."""
        known = self._load_balancer_of_pool.get(pool)
        if known is None:
            known = (await self.get_pool(pool)).load_balancer.uuid
        return known

    async def _member_in(self, pool: str, data: dict[str, Any]) -> Member:
        shaped = {
            "uuid": data.get("id"),
            "name": data.get("name") or "",
            "enabled": bool(data.get("admin_state_up", True)),
            "pool": {"uuid": pool},
            "load_balancer": {"uuid": await self._load_balancer_of(pool)},
            "protocol_port": data.get("protocol_port"),
            "monitor_port": data.get("monitor_port"),
            "address": data.get("address"),
            "subnet": {"uuid": data.get("subnet_id") or ""},
            "monitor_status": _MONITOR_STATUS.get(str(data.get("operating_status"))),
            "tags": tags_in(data.get("tags")),
            "created_at": data.get("created_at"),
        }
        return parsed("read pool member", Member, shaped)

    def _listener_in(self, data: dict[str, Any]) -> Listener:
        pool = data.get("default_pool_id")
        shaped = {
            "uuid": data.get("id"),
            "name": data.get("name") or "",
            "pool": {"uuid": pool} if pool else None,
            "load_balancer": {"uuid": _first_id(data.get("loadbalancers"))},
            "protocol": str(data.get("protocol", "")).lower(),
            "protocol_port": data.get("protocol_port"),
            "allowed_cidrs": data.get("allowed_cidrs") or [],
            **{ours: data.get(theirs) for ours, theirs in _TIMEOUTS.items()},
            "tags": tags_in(data.get("tags")),
            "created_at": data.get("created_at"),
        }
        return parsed("read listener", Listener, shaped)

    async def _health_monitor_in(self, data: dict[str, Any]) -> HealthMonitor:
        pool = _first_id(data.get("pools"))
        if not pool:
            raise CloudError("read health monitor: Octavia answered one without its pool")
        kind = str(data.get("type", "")).lower()
        http = None
        if kind in ("http", "https"):
            codes = str(data.get("expected_codes") or "")
            http = {
                "expected_codes": [code for code in codes.split(",") if code],
                "method": data.get("http_method") or "GET",
                "url_path": data.get("url_path") or "/",
                "version": f"{float(data.get('http_version') or 1.0):.1f}",
                "host": data.get("domain_name"),
            }
        shaped = {
            "uuid": data.get("id"),
            "pool": {"uuid": pool},
            "load_balancer": {"uuid": await self._load_balancer_of(pool)},
            "type": kind,
            "delay_s": data.get("delay"),
            "timeout_s": data.get("timeout"),
            "up_threshold": data.get("max_retries"),
            "down_threshold": data.get("max_retries_down") or MONITOR_DEFAULTS["max_retries_down"],
            "http": http,
            "tags": tags_in(data.get("tags")),
            "created_at": data.get("created_at"),
        }
        return parsed("read health monitor", HealthMonitor, shaped)

    async def _flavor_id(self, flavor: str) -> str:
        """A flavor by its ID, or by its name (one read); ``Invalid`` if Octavia has none of that name."""
        if _is_uuid(flavor):
            return flavor
        data = await self._request("find flavor", "GET", f"{_LBAAS}/flavors", params={"name": flavor})
        found = data.get("flavors") if isinstance(data, dict) else None
        if not found:
            raise Invalid(
                "create load balancer",
                400,
                detail=f"Octavia has no load-balancer flavor named {flavor!r}",
                advice="name one of `openstack loadbalancer flavor list` in spec.flavor, or leave it out",
            )
        return str(found[0]["id"])

    # --- load balancers ------------------------------------------------------------------------

    async def create_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancer:
        """Create a load balancer; it is ``changing`` (``PENDING_CREATE``) until the provider has built it."""
        vips = spec.vip_addresses or []
        if len(vips) != 1 or vips[0].subnet is None:
            raise Invalid(
                "create load balancer",
                400,
                detail="Octavia needs exactly one VIP with its subnet (spec.vipAddresses[0].subnetUUID)",
                advice="give one vipAddresses entry with subnetUUID (and address, if you want a fixed one)",
            )
        body: dict[str, Any] = {
            "name": spec.name,
            "vip_subnet_id": vips[0].subnet,
            "tags": tags_out(spec.tags),
        }
        if vips[0].address:
            body["vip_address"] = vips[0].address
        if spec.zone:
            body["availability_zone"] = spec.zone
        if spec.flavor:
            body["flavor_id"] = await self._flavor_id(spec.flavor)
        data = await self._create("load balancer", f"{_LBAAS}/loadbalancers", "loadbalancer", body)
        return self._load_balancer_in(data)

    async def get_load_balancer(self, uuid: str) -> LoadBalancer:
        """Read a load balancer; one Octavia marked ``DELETED`` is ``NotFound``."""
        path = f"{_LBAAS}/loadbalancers/{segment(uuid)}"
        return self._load_balancer_in(await self._get("load balancer", path, "loadbalancer"))

    async def update_load_balancer(self, uuid: str, changes: LoadBalancerUpdate) -> None:
        """Change a load balancer's name and/or tags."""
        await self._update(
            "load balancer",
            f"{_LBAAS}/loadbalancers/{segment(uuid)}",
            "loadbalancer",
            _named_and_tagged(changes),
        )

    async def delete_load_balancer(self, uuid: str) -> None:
        """Delete a load balancer with its whole tree (``cascade=true``); success if it is gone already."""
        await self._delete("load balancer", f"{_LBAAS}/loadbalancers/{segment(uuid)}", {"cascade": "true"})

    async def list_load_balancers(self, tags: Mapping[str, str] | None = None) -> list[LoadBalancer]:
        """All load balancers of the project, or those carrying ``tags``."""
        found = await self._list("load balancer", f"{_LBAAS}/loadbalancers", "loadbalancers", tags)
        return [self._load_balancer_in(item) for item in found]

    # --- pools ---------------------------------------------------------------------------------

    async def create_pool(self, spec: PoolSpec) -> Pool:
        """Create a pool on ``spec.load_balancer``."""
        body = {
            "name": spec.name,
            "loadbalancer_id": spec.load_balancer,
            "lb_algorithm": spec.algorithm.upper(),
            "protocol": spec.protocol.upper(),
            "tags": tags_out(spec.tags),
        }
        return self._pool_in(await self._create("pool", f"{_LBAAS}/pools", "pool", body))

    async def get_pool(self, uuid: str) -> Pool:
        """Read a pool."""
        return self._pool_in(await self._get("pool", f"{_LBAAS}/pools/{segment(uuid)}", "pool"))

    async def update_pool(self, uuid: str, changes: PoolUpdate) -> None:
        """Change a pool's name and/or tags."""
        await self._update("pool", f"{_LBAAS}/pools/{segment(uuid)}", "pool", _named_and_tagged(changes))

    async def delete_pool(self, uuid: str) -> None:
        """Delete a pool (its members and monitor go with it); success if it is gone already."""
        await self._delete("pool", f"{_LBAAS}/pools/{segment(uuid)}")

    async def list_pools(self, tags: Mapping[str, str] | None = None) -> list[Pool]:
        """All pools of the project, or those carrying ``tags``."""
        return [self._pool_in(item) for item in await self._list("pool", f"{_LBAAS}/pools", "pools", tags)]

    # --- pool members (nested under their pool) ------------------------------------------------

    def _members(self, pool: str) -> str:
        return f"{_LBAAS}/pools/{segment(pool)}/members"

    async def create_member(self, pool: str, spec: MemberSpec) -> Member:
        """Add a member to ``pool``."""
        body: dict[str, Any] = {
            "name": spec.name,
            "address": spec.address,
            "protocol_port": spec.protocol_port,
            "subnet_id": spec.subnet,
            "admin_state_up": spec.enabled,
            "tags": tags_out(spec.tags),
        }
        if spec.monitor_port is not None:
            body["monitor_port"] = spec.monitor_port
        return await self._member_in(
            pool, await self._create("pool member", self._members(pool), "member", body)
        )

    async def get_member(self, pool: str, uuid: str) -> Member:
        """Read a member of ``pool``."""
        data = await self._get("pool member", f"{self._members(pool)}/{segment(uuid)}", "member")
        return await self._member_in(pool, data)

    async def update_member(self, pool: str, uuid: str, changes: MemberUpdate) -> None:
        """Change a member's name, ``enabled`` (``admin_state_up``) and/or tags."""
        fields = changes.model_dump(exclude_unset=True)
        body = _named_and_tagged(changes)
        if "enabled" in fields:
            body["admin_state_up"] = fields["enabled"]
        await self._update("pool member", f"{self._members(pool)}/{segment(uuid)}", "member", body)

    async def delete_member(self, pool: str, uuid: str) -> None:
        """Remove a member; success if it (or its pool) is gone already."""
        await self._delete("pool member", f"{self._members(pool)}/{segment(uuid)}")

    async def list_members(self, pool: str, tags: Mapping[str, str] | None = None) -> list[Member]:
        """The members of ``pool``, or those carrying ``tags``."""
        found = await self._list("pool member", self._members(pool), "members", tags)
        return [await self._member_in(pool, item) for item in found]

    # --- listeners -----------------------------------------------------------------------------

    async def create_listener(self, spec: ListenerSpec) -> Listener:
        """Create a listener for ``spec.pool``, on that pool's load balancer."""
        body: dict[str, Any] = {
            "name": spec.name,
            "loadbalancer_id": await self._load_balancer_of(spec.pool),
            "default_pool_id": spec.pool,
            "protocol": spec.protocol.upper(),
            "protocol_port": spec.protocol_port,
            "allowed_cidrs": spec.allowed_cidrs or None,
            "tags": tags_out(spec.tags),
        }
        body.update(
            {theirs: getattr(spec, ours) for ours, theirs in _TIMEOUTS.items() if getattr(spec, ours)}
        )
        body = {key: value for key, value in body.items() if value is not None}
        return self._listener_in(await self._create("listener", f"{_LBAAS}/listeners", "listener", body))

    async def get_listener(self, uuid: str) -> Listener:
        """Read a listener."""
        return self._listener_in(
            await self._get("listener", f"{_LBAAS}/listeners/{segment(uuid)}", "listener")
        )

    async def update_listener(self, uuid: str, changes: ListenerUpdate) -> None:
        """Change a listener's name, allowed CIDRs, timeouts and/or tags. Its protocol and port cannot
        change on Octavia: ``Invalid``, before any request."""
        fields = changes.model_dump(exclude_unset=True)
        fixed = sorted({"protocol", "protocol_port"} & fields.keys())
        if fixed:
            raise Invalid(
                "update listener",
                400,
                detail=f"Octavia cannot change a listener's {' or '.join(fixed)}",
                advice="delete the LoadBalancerListener and create it again with the new protocol or port",
            )
        body = _named_and_tagged(changes)
        if "allowed_cidrs" in fields:
            body["allowed_cidrs"] = fields["allowed_cidrs"]
        body.update({theirs: fields[ours] for ours, theirs in _TIMEOUTS.items() if ours in fields})
        await self._update("listener", f"{_LBAAS}/listeners/{segment(uuid)}", "listener", body)

    async def delete_listener(self, uuid: str) -> None:
        """Delete a listener; success if it is gone already."""
        await self._delete("listener", f"{_LBAAS}/listeners/{segment(uuid)}")

    async def list_listeners(self, tags: Mapping[str, str] | None = None) -> list[Listener]:
        """All listeners of the project, or those carrying ``tags``."""
        found = await self._list("listener", f"{_LBAAS}/listeners", "listeners", tags)
        return [self._listener_in(item) for item in found]

    # --- health monitors -----------------------------------------------------------------------

    async def create_health_monitor(self, spec: HealthMonitorSpec) -> HealthMonitor:
        """Create the health monitor of ``spec.pool`` (one per pool); unset numbers take cloudscale's
        defaults, which Octavia needs to be given."""
        body: dict[str, Any] = {
            "pool_id": spec.pool,
            "type": spec.type.upper(),
            "delay": spec.delay_s or MONITOR_DEFAULTS["delay"],
            "timeout": spec.timeout_s or MONITOR_DEFAULTS["timeout"],
            "max_retries": spec.up_threshold or MONITOR_DEFAULTS["max_retries"],
            "max_retries_down": spec.down_threshold or MONITOR_DEFAULTS["max_retries_down"],
            "tags": tags_out(spec.tags),
        }
        if spec.http is not None:
            body.update(_http_out(spec.http.model_dump(exclude_none=True)))
        data = await self._create("health monitor", f"{_LBAAS}/healthmonitors", "healthmonitor", body)
        return await self._health_monitor_in(data)

    async def get_health_monitor(self, uuid: str) -> HealthMonitor:
        """Read a health monitor."""
        path = f"{_LBAAS}/healthmonitors/{segment(uuid)}"
        return await self._health_monitor_in(await self._get("health monitor", path, "healthmonitor"))

    async def update_health_monitor(self, uuid: str, changes: HealthMonitorUpdate) -> None:
        """Change a health monitor's timings, thresholds, HTTP options and/or tags."""
        fields = changes.model_dump(exclude_unset=True)
        body: dict[str, Any] = {}
        for ours, theirs in (
            ("delay_s", "delay"),
            ("timeout_s", "timeout"),
            ("up_threshold", "max_retries"),
            ("down_threshold", "max_retries_down"),
        ):
            if ours in fields:
                body[theirs] = fields[ours]
        if "tags" in fields:
            body["tags"] = tags_out(fields["tags"] or {})
        if fields.get("http"):
            body.update(_http_out(fields["http"]))
        await self._update(
            "health monitor", f"{_LBAAS}/healthmonitors/{segment(uuid)}", "healthmonitor", body
        )

    async def delete_health_monitor(self, uuid: str) -> None:
        """Delete a health monitor; success if it is gone already."""
        await self._delete("health monitor", f"{_LBAAS}/healthmonitors/{segment(uuid)}")

    async def list_health_monitors(self, tags: Mapping[str, str] | None = None) -> list[HealthMonitor]:
        """All health monitors of the project, or those carrying ``tags``."""
        found = await self._list("health monitor", f"{_LBAAS}/healthmonitors", "healthmonitors", tags)
        listed = []
        for item in found:
            try:
                listed.append(await self._health_monitor_in(item))
            except NotFound:  # its pool was deleted since the list was read: so is the monitor
                continue
        return listed


def _carries(item: dict[str, Any], tags: Mapping[str, str]) -> bool:
    found = tags_in(item.get("tags"))
    return all(found.get(key) == value for key, value in tags.items())


def _unwrap(what: str, key: str, data: Any) -> dict[str, Any]:
    """Octavia wraps each object in its kind's name (``{"pool": {...}}``)."""
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise CloudError(f"{what}: Octavia answered without a {key} object")
    inner: dict[str, Any] = data[key]
    return inner


def _first_id(refs: Any) -> str:
    """The ID of the first of ``[{"id": …}]`` (a pool's load balancers, a monitor's pools); ``""`` if none."""
    if isinstance(refs, list) and refs and isinstance(refs[0], dict):
        return str(refs[0].get("id") or "")
    return ""


def _named_and_tagged(changes: BaseModel) -> dict[str, Any]:
    """The name and tags of an update, in Octavia's form; only those that were set."""
    fields = changes.model_dump(exclude_unset=True)
    body: dict[str, Any] = {}
    if "name" in fields:
        body["name"] = fields["name"]
    if "tags" in fields:
        body["tags"] = tags_out(fields["tags"] or {})
    return body


def _http_out(http: Mapping[str, Any]) -> dict[str, Any]:
    """HTTP check options in Octavia's names (expected codes as one comma-separated string)."""
    body: dict[str, Any] = {}
    if http.get("expected_codes") is not None:
        body["expected_codes"] = ",".join(http["expected_codes"])
    if http.get("method") is not None:
        body["http_method"] = http["method"]
    if http.get("url_path") is not None:
        body["url_path"] = http["url_path"]
    if http.get("version") is not None:
        body["http_version"] = float(http["version"])
    if http.get("host") is not None:
        body["domain_name"] = http["host"]
        body.setdefault("http_version", 1.1)  # Octavia needs it with a domain name; cloudscale's default
    return body
