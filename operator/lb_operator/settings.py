"""The operator's one settings object: every field with its unit and default, checked at start.

Read from ``LBOP_*`` environment variables (the Helm chart sets them), so a
bad value stops the operator at start with a message naming the variable,
instead of failing later inside a handler.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lb_operator.cloud.settings import DEFAULT_BASE_URL, is_loopback
from lb_operator.mutex import MutexSettings

_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LockScope = Literal["loadBalancer", "pool", "none"]
_DEFAULT_SCOPE: LockScope = "loadBalancer"
CHILD_KINDS = (
    "LoadBalancerPool",
    "LoadBalancerPoolMember",
    "LoadBalancerListener",
    "LoadBalancerHealthMonitor",
)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


class OperatorSettings(BaseModel):
    """Everything the operator can be told at start."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    namespace: str = Field(
        default="default",
        min_length=1,
        description="Namespace of the lock Leases: the operator's own (LBOP_NAMESPACE, else POD_NAMESPACE).",
    )
    identity: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This replica's name in lock Leases (LBOP_IDENTITY, else POD_NAME, else the host name).",
    )
    watch_namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces whose objects this operator reconciles, comma-separated "
        "(LBOP_WATCH_NAMESPACES); empty: all namespaces.",
    )
    backend: Literal["cloudscale", "octavia"] = Field(
        default="cloudscale",
        description="Which cloud API the operator drives (LBOP_BACKEND): `cloudscale` (cloudscale.ch's v1 "
        "API, or the simulator) or `octavia` (OpenStack Octavia's v2 API; credentials from OS_* variables "
        "or clouds.yaml, see docs/backends.md).",
    )
    cloud_url: str | None = Field(
        default=None,
        description="URL of the cloud's API (LBOP_CLOUD_URL). cloudscale: its v1 API, default "
        f"{DEFAULT_BASE_URL}. Octavia: the load-balancer endpoint, default the one in the Keystone "
        "catalog; set with no Keystone credentials, a noauth Octavia (project from OS_PROJECT_ID). "
        "Plain http:// only to a loopback address: a credential is never sent in cleartext.",
    )
    cloud_request_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one cloud API request may take at most (LBOP_CLOUD_REQUEST_TIMEOUT); a "
        "handler attempt's own deadline cuts it shorter.",
    )
    cloud_connections: int = Field(
        default=100,
        ge=1,
        description="Connections to the cloud API this replica keeps open at most (LBOP_CLOUD_CONNECTIONS): "
        "its cloud requests in flight at once. The changes of different load balancers run in parallel, "
        "so below the trees a replica serves it is what bounds them at a real cloud's pace.",
    )
    cloud_token_file: Path | None = Field(
        default=None,
        description="File holding the API token, e.g. a mounted Secret (LBOP_CLOUD_TOKEN_FILE). "
        "Unset: the token comes from CLOUDSCALE_API_TOKEN.",
    )
    locking: bool = Field(
        default=True,
        description="UNSAFE when false (LBOP_LOCKING=false): no Lease mutex at all, so replicas and "
        "handlers send concurrent changes and the cloud rejects them. For tests and benchmarks only.",
    )
    sharding: bool = Field(
        default=True,
        description="Active-active replicas (LBOP_SHARDING): each object is owned by one live replica, "
        "each load balancer's tree by the same one, and each replica watches only its own. False: this "
        "replica reconciles everything it watches (run one only). Needs locking.",
    )
    nudge_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between looks for objects labelled for this replica that no handler has "
        "handled at their current generation; one unhandled at two looks in a row gets an annotation "
        "written, so Kopf sees it (LBOP_NUDGE_INTERVAL). A safety net for missed watch events.",
    )
    shutdown_grace: float = Field(
        default=2.0,
        gt=0,
        description="Seconds a stopping replica gives its running handlers before cancelling them "
        "(LBOP_SHUTDOWN_GRACE); its member Lease is released right after, so a graceful hand-over takes "
        "about this long.",
    )
    handler_journal: Path | None = Field(
        default=None,
        description="File to append one JSON line to at each handler's start and end (LBOP_HANDLER_JOURNAL): "
        "object UID, replica, monotonic time. A debugging aid; the tests check with it that no object is "
        "handled by two replicas at once.",
    )
    lock_scope: dict[str, LockScope] = Field(
        default_factory=lambda: dict.fromkeys(CHILD_KINDS, _DEFAULT_SCOPE),
        description="Per child kind, what its changes are serialized on: its `loadBalancer` (default, "
        "as the cloud applies one change per load balancer), its `pool`, or `none` "
        "(LBOP_LOCK_SCOPE, e.g. `LoadBalancerHealthMonitor=none,LoadBalancerPoolMember=pool`).",
    )
    handler_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds one handler attempt awaits its change, and a change may work under its "
        "lock (LBOP_HANDLER_TIMEOUT). A change queued past it keeps its place and Kopf's retry awaits "
        "it; a change may take 10 times this in all, waits included, then it is retried, not failed.",
    )
    retry_delay: float = Field(
        default=2.0, gt=0, description="Seconds before retrying after a transient error (LBOP_RETRY_DELAY)."
    )
    retry_delay_max: float = Field(
        default=60.0,
        gt=0,
        description="Seconds: the longest back-off between retries (LBOP_RETRY_DELAY_MAX).",
    )
    ready_poll: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between checks of a load balancer still being built (LBOP_READY_POLL).",
    )
    resync_interval: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between drift checks of each object against the cloud (LBOP_RESYNC_INTERVAL), "
        "the first at a random point of the first interval so that checks spread evenly: a changed or "
        "deleted cloud object is set back to its spec, and status "
        "(cloudStatus, monitorStatus) refreshed. The checks share one list per kind (members: per pool) "
        "and interval in each replica (reconcile.snapshot); no lock when "
        "in sync.",
    )
    global_lock: bool = Field(
        default=False,
        description="Benchmark baseline only (LBOP_GLOBAL_LOCK): every change of every object is "
        "serialized on one lock, as a single-mutex design would. Slow on purpose.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port serving Prometheus metrics at /metrics (LBOP_METRICS_PORT); 0: not served. "
        "The Helm chart sets 9090.",
    )
    health_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port serving Kopf's health endpoint at /healthz for liveness and readiness probes "
        "(LBOP_HEALTH_PORT); 0: not served. The Helm chart sets 8080.",
    )
    listen_address: str = Field(
        default="0.0.0.0",
        min_length=1,
        description="Address the metrics and health ports listen on (LBOP_LISTEN_ADDRESS); 127.0.0.1 keeps "
        "them on this machine.",
    )
    lease_duration: int = Field(
        default=15, ge=3, description="Seconds a lock Lease lasts without renewal (LBOP_LEASE_DURATION)."
    )
    services: bool = Field(
        default=True,
        description="Serve Services of `type: LoadBalancer` whose `spec.loadBalancerClass` is "
        "`lboperator.dev/<backend>` (LBOP_SERVICES); needs list/watch of Services, Nodes and "
        "EndpointSlices (the chart grants them). Every other Service is ignored.",
    )
    service_member_subnet: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="UUID of the subnet a Service's members are reached through "
        "(LBOP_SERVICE_MEMBER_SUBNET), unless the Service's `lboperator.dev/member-subnet` annotation "
        "names one.",
    )
    service_zone: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9_.-]{1,64}$",
        description="Zone of a Service's load balancer (LBOP_SERVICE_ZONE), unless its "
        "`lboperator.dev/zone` annotation names one; cloudscale needs one of the two.",
    )
    service_vip_subnet: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="UUID of the subnet of a Service's VIP (LBOP_SERVICE_VIP_SUBNET), unless its "
        "`lboperator.dev/vip-subnet` annotation names one; Octavia needs one of the two.",
    )

    @field_validator("cloud_url")
    @classmethod
    def _no_token_in_cleartext(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// to a loopback address)")
        if url.startswith("http://") and not is_loopback(url):
            raise ValueError(
                "plain http:// would send the API token in cleartext; use https://, or http:// only to "
                "a loopback address such as the simulator on 127.0.0.1"
            )
        return url

    @model_validator(mode="after")
    def _identity_is_a_label_value(self) -> OperatorSettings:
        if self.sharding and not _LABEL_VALUE.fullmatch(self.identity):
            raise ValueError(
                f"identity {self.identity!r} must be a valid label value (≤ 63 of A-Z a-z 0-9 - _ ., "
                "alphanumeric at both ends): it names this replica's shard"
            )
        if self.sharding and not self.locking:
            raise ValueError("sharding needs locking (its members and sharder are Lease locks); set both")
        return self

    def mutex_settings(self) -> MutexSettings:
        """Lock timings derived from the lease duration: renew at 1/3, give up at 2/3; a lease is passed
        between the replica's own tasks (changes queued for one tree) for at most one lease duration
        before it is released for the other replicas, and one released with none of them waiting
        lingers for 1/5 of it (3 s by default) for the next change of the tree."""
        return MutexSettings(
            lease_duration=self.lease_duration,
            renew_deadline=self.lease_duration * 2 / 3,
            renew_interval=self.lease_duration / 3,
            pass_within=self.lease_duration,
            linger=self.lease_duration / 5,
        )

    def scope_of(self, kind: str) -> LockScope:
        return self.lock_scope.get(kind, "loadBalancer")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from ``LBOP_*`` variables; ``SettingsError`` names the variable at fault."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        fallbacks = {"namespace": "POD_NAMESPACE", "identity": "POD_NAME"}
        for name in cls.model_fields:
            raw = env.get(f"LBOP_{name.upper()}") or env.get(fallbacks.get(name, ""), "")
            if raw and name == "lock_scope":
                values[name] = _parse_scopes(raw)
            elif raw and name == "watch_namespaces":
                values[name] = [item.strip() for item in raw.split(",") if item.strip()]
            elif raw:
                values[name] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{_variable(e['loc'])}: {e['msg']}" for e in error.errors(include_input=False)
            )
            raise SettingsError(f"invalid operator settings: {problems}") from None


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable a validation error is about (a check across fields names them all)."""
    return f"LBOP_{str(location[0]).upper()}" if location else "LBOP_IDENTITY/LBOP_SHARDING/LBOP_LOCKING"


def _parse_scopes(raw: str) -> dict[str, str]:
    scopes = dict.fromkeys(CHILD_KINDS, "loadBalancer")
    for item in raw.split(","):
        kind, _, scope = item.partition("=")
        if kind.strip() not in CHILD_KINDS:
            raise SettingsError(
                f"LBOP_LOCK_SCOPE: unknown kind {kind.strip()!r}; use one of {', '.join(CHILD_KINDS)}"
            )
        scopes[kind.strip()] = scope.strip()
    return scopes
