"""Lease naming and the parsed view of one lock Lease."""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Any

LOCK_LABEL = "lboperator.dev/lock"
KEY_ANNOTATION = "lboperator.dev/lock-key"
_MAX_NAME = 253  # a Lease name is a DNS subdomain
_HASHED_HEAD = 40
_SEGMENT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_INVALID = re.compile(r"[^a-z0-9-]+")


def lease_name(key: str) -> str:
    """The Lease name of a lock key: ``lb/<uid>`` → ``lb.<uid>``; two different keys never share one.

    A key whose ``/``-separated segments are DNS labels (lower-case letters,
    digits, inner ``-``) becomes its segments joined by ``.``: segments hold
    no dot, so the name gives the key back. Replacing ``/`` by ``-`` would not
    (``lb/shop/prod-web`` and ``lb/shop-prod/web`` would meet). Any other key
    gets a readable head and a hash of the whole key; the full key is also
    kept in an annotation and checked on every acquisition
    (``LeaseKeyCollision``).
    """
    if not key:
        raise ValueError("a lock key must not be empty (locking on '' would serialize unrelated work)")
    segments = key.split("/")
    if len(key) <= _MAX_NAME and all(_SEGMENT.fullmatch(segment) for segment in segments):
        return ".".join(segments)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    head = _INVALID.sub("-", key.lower()).strip("-")[:_HASHED_HEAD].rstrip("-") or "lock"
    return f"{head}-{digest}"


def key_kind(key: str) -> str:
    """The kind part of a key (``lb/<uuid>`` → ``lb``): a bounded metrics label."""
    kind, slash, _ = key.partition("/")
    return kind if slash and kind else "default"


def micro_time(moment: datetime.datetime | None = None) -> str:
    """A Kubernetes MicroTime string (informational only: expiry never compares wall clocks)."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_resource_version(value: str) -> int:
    """Resource versions are comparable integers (KEP-5504, stable since Kubernetes 1.35)."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"resourceVersion {value!r} is not an integer: this API server does not serve comparable "
            "resource versions (Kubernetes >= 1.35 does), which the mutex's fencing tokens need"
        ) from None


@dataclass(frozen=True)
class LeaseRecord:
    """What one Lease object said when we read it, as a plain value."""

    name: str
    key: str | None
    holder: str | None
    duration: float
    transitions: int
    resource_version: str
    raw: dict[str, Any]

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> LeaseRecord:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        return cls(
            name=str(metadata.get("name", "")),
            key=(metadata.get("annotations") or {}).get(KEY_ANNOTATION),
            holder=spec.get("holderIdentity") or None,
            duration=float(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(metadata.get("resourceVersion", "")),
            raw=obj,
        )

    @property
    def version(self) -> int:
        return parse_resource_version(self.resource_version)

    def is_newer_than(self, other: LeaseRecord | None) -> bool:
        return other is None or self.version > other.version
