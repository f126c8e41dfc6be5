"""The five kinds of the cloudscale.ch v1 load-balancer API, as typed models.

Each kind comes in three shapes, because the API treats them differently:

- ``Xxx`` — what the API returns (read-only fields included). Unknown fields
  are ignored and enum-like fields are plain strings, so a new value on the
  server side never breaks a running operator.
- ``XxxSpec`` — the body of a create. Enums and ranges are checked here, so
  most mistakes fail before a request is sent; the server checks the rest
  (parents exist, one health monitor per pool, ...).
- ``XxxUpdate`` — the body of a PATCH: only the fields the API can change.
  A field left unset is not sent at all.

Field names, paths and which fields are updatable were checked against the
cloudscale Go SDK and Terraform provider; see ``docs/backends.md``.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tags = dict[str, str]
"""Free-form string metadata on every kind; lists can be filtered by tags."""

Algorithm = Literal["round_robin", "least_connections", "source_ip"]
PoolProtocol = Literal["tcp", "proxy", "proxyv2", "udp"]
ListenerProtocol = Literal["tcp", "udp"]
MonitorType = Literal["ping", "tcp", "http", "https", "tls-hello", "udp-connect"]
HttpMethod = Literal["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]
HttpVersion = Literal["1.0", "1.1"]

Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, Field(min_length=1)]
Uuid = Annotated[str, Field(min_length=1)]
Seconds = Annotated[int, Field(ge=1)]
Milliseconds = Annotated[int, Field(ge=1)]
Threshold = Annotated[int, Field(ge=1)]


class _Read(BaseModel):
    """An API answer: tolerant of fields this client does not know yet."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Write(BaseModel):
    """A request body: a misspelt field is a bug in the caller, not something to drop silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        """The JSON body of a create: every field that has a value."""
        return self.model_dump(mode="json", exclude_none=True)


class _Change(BaseModel):
    """A PATCH body: only what the caller set (``None`` set explicitly is sent as ``null``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        """The JSON body of an update: only the fields that were set."""
        return self.model_dump(mode="json", exclude_unset=True)


# --- references the API embeds instead of bare UUIDs -------------------------------------------


class Ref(_Read):
    """A link to another object: ``{"href", "uuid", "name"}``."""

    uuid: str
    href: str | None = None
    name: str | None = None


class SubnetRef(_Read):
    """A link to a subnet: ``{"href", "uuid", "cidr"}``."""

    uuid: str
    href: str | None = None
    cidr: str | None = None


class ZoneRef(_Read):
    """A zone, e.g. ``{"slug": "lpg1"}``."""

    slug: str


class FlavorRef(_Read):
    """A load-balancer flavor, e.g. ``{"slug": "lb-standard", "name": "LB-Standard"}``."""

    slug: str
    name: str | None = None


# --- load balancer -------------------------------------------------------------------------------


class VipAddress(_Read):
    """A virtual IP of a load balancer."""

    version: int
    address: str
    subnet: SubnetRef


class LoadBalancer(_Read):
    """A load balancer as the API returns it. ``status`` goes ``changing`` → ``running``."""

    uuid: str
    href: str | None = None
    name: str
    flavor: FlavorRef
    zone: ZoneRef
    status: str
    vip_addresses: list[VipAddress] = Field(default_factory=list)
    tags: Tags = Field(default_factory=dict)
    created_at: datetime | None = None


class VipAddressSpec(_Write):
    """A VIP in a private subnet, by subnet, address or both (the provider's schema makes each optional);
    leave ``vip_addresses`` out entirely for public addresses."""

    subnet: Uuid | None = None
    address: str | None = None

    @model_validator(mode="after")
    def _subnet_or_address(self) -> VipAddressSpec:
        if self.subnet is None and self.address is None:
            raise ValueError("a VIP needs its subnet, its address, or both")
        return self

    @field_validator("address")
    @classmethod
    def _is_an_ip(cls, value: str | None) -> str | None:
        if value is not None:
            ip_address(value)
        return value


class LoadBalancerSpec(_Write):
    """Create a load balancer. ``zone`` is a slug (``lpg1``, ``rma1``; on Octavia an availability zone);
    ``flavor`` unset is each backend's default (cloudscale: ``lb-standard``; Octavia: none)."""

    name: Name
    flavor: Name | None = None
    zone: Name | None = None
    vip_addresses: list[VipAddressSpec] | None = None
    tags: Tags = Field(default_factory=dict)


class LoadBalancerUpdate(_Change):
    """Change a load balancer: only its name and tags can change (flavor, zone and VIPs cannot)."""

    name: Name | None = None
    tags: Tags | None = None


# --- pool ----------------------------------------------------------------------------------------


class Pool(_Read):
    """A pool of members on one load balancer."""

    uuid: str
    href: str | None = None
    name: str
    load_balancer: Ref
    algorithm: str
    protocol: str
    tags: Tags = Field(default_factory=dict)
    created_at: datetime | None = None


class PoolSpec(_Write):
    """Create a pool on the load balancer ``load_balancer`` (its UUID)."""

    name: Name
    load_balancer: Uuid
    algorithm: Algorithm
    protocol: PoolProtocol
    tags: Tags = Field(default_factory=dict)


class PoolUpdate(_Change):
    """Change a pool: only its name and tags (algorithm and protocol need a new pool)."""

    name: Name | None = None
    tags: Tags | None = None


# --- pool member ---------------------------------------------------------------------------------


class Member(_Read):
    """A pool member (``v1/load-balancers/pools/{pool}/members/{uuid}``)."""

    uuid: str
    href: str | None = None
    name: str
    enabled: bool
    pool: Ref
    load_balancer: Ref
    protocol_port: int
    monitor_port: int | None = None
    address: str
    subnet: SubnetRef
    monitor_status: str | None = None
    tags: Tags = Field(default_factory=dict)
    created_at: datetime | None = None


class MemberSpec(_Write):
    """Create a member; its pool is part of the path, not of the body."""

    name: Name
    protocol_port: Port
    address: str
    subnet: Uuid
    enabled: bool = True
    monitor_port: Port | None = None
    tags: Tags = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _is_an_ip(cls, value: str) -> str:
        ip_address(value)
        return value


class MemberUpdate(_Change):
    """Change a member: its name, whether it gets traffic, and tags."""

    name: Name | None = None
    enabled: bool | None = None
    tags: Tags | None = None


# --- listener ------------------------------------------------------------------------------------


class Listener(_Read):
    """A listener: a port on the load balancer's VIPs that forwards to a pool."""

    uuid: str
    href: str | None = None
    name: str
    pool: Ref | None = None
    load_balancer: Ref
    protocol: str
    protocol_port: int
    allowed_cidrs: list[str] = Field(default_factory=list)
    timeout_client_data_ms: int | None = None
    timeout_member_connect_ms: int | None = None
    timeout_member_data_ms: int | None = None
    tags: Tags = Field(default_factory=dict)
    created_at: datetime | None = None


class ListenerSpec(_Write):
    """Create a listener for ``pool``; unset timeouts take the API's defaults (50000/5000/50000 ms)."""

    name: Name
    pool: Uuid
    protocol: ListenerProtocol = "tcp"
    protocol_port: Port
    allowed_cidrs: list[str] = Field(default_factory=list)
    timeout_client_data_ms: Milliseconds | None = None
    timeout_member_connect_ms: Milliseconds | None = None
    timeout_member_data_ms: Milliseconds | None = None
    tags: Tags = Field(default_factory=dict)


class ListenerUpdate(_Change):
    """Change a listener: everything except its pool."""

    name: Name | None = None
    protocol: ListenerProtocol | None = None
    protocol_port: Port | None = None
    allowed_cidrs: list[str] | None = None
    timeout_client_data_ms: Milliseconds | None = None
    timeout_member_connect_ms: Milliseconds | None = None
    timeout_member_data_ms: Milliseconds | None = None
    tags: Tags | None = None


# --- health monitor ------------------------------------------------------------------------------


class HttpCheck(_Read):
    """How an ``http``/``https`` health monitor checks members."""

    expected_codes: list[str] = Field(default_factory=list)
    method: str
    url_path: str
    version: str
    host: str | None = None


class HealthMonitor(_Read):
    """The health monitor of a pool (at most one per pool). It has no name."""

    uuid: str
    href: str | None = None
    pool: Ref
    load_balancer: Ref
    type: str
    delay_s: int
    timeout_s: int
    up_threshold: int
    down_threshold: int
    http: HttpCheck | None = None
    tags: Tags = Field(default_factory=dict)
    created_at: datetime | None = None


class HttpCheckSpec(_Write):
    """HTTP options at creation; unset ones take the API's defaults (``["200"]``, GET, ``/``, 1.1)."""

    expected_codes: list[str] | None = None
    method: HttpMethod | None = None
    url_path: str | None = None
    version: HttpVersion | None = None
    host: str | None = None


class HealthMonitorSpec(_Write):
    """Create the health monitor of ``pool``; unset numbers take the API's defaults (2 s, 1 s, 2, 3)."""

    pool: Uuid
    type: MonitorType
    delay_s: Seconds | None = None
    timeout_s: Seconds | None = None
    up_threshold: Threshold | None = None
    down_threshold: Threshold | None = None
    http: HttpCheckSpec | None = None
    tags: Tags = Field(default_factory=dict)


class HttpCheckUpdate(_Change):
    """Change HTTP options; the HTTP version cannot change (the Terraform provider recreates)."""

    expected_codes: list[str] | None = None
    method: HttpMethod | None = None
    url_path: str | None = None
    host: str | None = None


class HealthMonitorUpdate(_Change):
    """Change a health monitor: timings, thresholds, HTTP options, tags (not its type or pool)."""

    delay_s: Seconds | None = None
    timeout_s: Seconds | None = None
    up_threshold: Threshold | None = None
    down_threshold: Threshold | None = None
    http: HttpCheckUpdate | None = None
    tags: Tags | None = None
