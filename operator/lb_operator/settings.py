"""The operator's one settings object: every field with its unit and default, checked at start.

Read from ``LBOP_*`` environment variables (the Helm chart sets them), so a
bad value stops the operator at start with a message naming the variable,
instead of failing later inside a handler.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lb_operator.mutex import MutexSettings

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
    cloud_url: str = Field(
        default="http://127.0.0.1:8080/v1",
        description="URL of the cloud's v1 API (LBOP_CLOUD_URL); default: a simulator on this host. "
        "cloudscale.ch: https://api.cloudscale.ch/v1.",
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
    lock_scope: dict[str, LockScope] = Field(
        default_factory=lambda: dict.fromkeys(CHILD_KINDS, _DEFAULT_SCOPE),
        description="Per child kind, what its changes are serialized on: its `loadBalancer` (default, "
        "as the cloud applies one change per load balancer), its `pool`, or `none` "
        "(LBOP_LOCK_SCOPE, e.g. `LoadBalancerHealthMonitor=none,LoadBalancerPoolMember=pool`).",
    )
    handler_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds one handler attempt may take; the lock wait gets what is left of it "
        "(LBOP_HANDLER_TIMEOUT). On timeout the handler is retried later, not failed.",
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
    lease_duration: int = Field(
        default=15, ge=3, description="Seconds a lock Lease lasts without renewal (LBOP_LEASE_DURATION)."
    )

    def mutex_settings(self) -> MutexSettings:
        """Lock timings derived from the lease duration: renew at 1/3, give up at 2/3."""
        return MutexSettings(
            lease_duration=self.lease_duration,
            renew_deadline=self.lease_duration * 2 / 3,
            renew_interval=self.lease_duration / 3,
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
                f"LBOP_{str(e['loc'][0]).upper()}: {e['msg']}" for e in error.errors(include_input=False)
            )
            raise SettingsError(f"invalid operator settings: {problems}") from None


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
