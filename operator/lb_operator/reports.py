"""Read-only views of the cluster for people: who is a member, who owns what, which locks are held.

``lb-operator shards`` and ``lb-operator locks`` print these. Times are from
the Leases' wall-clock stamps: informational only (the operator itself never
compares wall clocks of different nodes).
"""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Any

from kubernetes.aio import client

from lb_operator.mutex import KEY_ANNOTATION, LOCK_LABEL
from lb_operator.sharding import SHARD_LABEL
from lb_operator.sharding.members import MEMBER_PREFIX
from lb_operator.sharding.sharder import SHARDER_KEY
from lb_operator.sharding.streams import list_objects


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _age(stamp: str | None, now: datetime.datetime) -> float | None:
    if not stamp:
        return None
    return (now - datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


async def _leases(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listing = await client.CoordinationV1Api(api).list_namespaced_lease(namespace, label_selector=LOCK_LABEL)
    return [api.sanitize_for_serialization(item) for item in listing.items]  # type: ignore[no-untyped-call]


def _live(lease: dict[str, Any], now: datetime.datetime) -> bool:
    spec = lease.get("spec") or {}
    renewed = _age(spec.get("renewTime"), now)
    return (
        bool(spec.get("holderIdentity"))
        and renewed is not None
        and renewed < spec.get("leaseDurationSeconds", 0)
    )


def _key(lease: dict[str, Any]) -> str:
    return str((lease["metadata"].get("annotations") or {}).get(KEY_ANNOTATION, lease["metadata"]["name"]))


async def shards(api: client.ApiClient, namespace: str, watch_namespaces: list[str]) -> str:
    """Members (live or not), their lease age, the objects each owns, and which one is the sharder."""
    now = datetime.datetime.now(datetime.UTC)
    leases = await _leases(api, namespace)
    sharder = next((lease for lease in leases if _key(lease) == SHARDER_KEY and _live(lease, now)), None)
    sharder_holder = (sharder or {}).get("spec", {}).get("holderIdentity") or ""
    owned: Counter[str | None] = Counter()
    for _, item in await list_objects(client.CustomObjectsApi(api), watch_namespaces):
        owned[(item["metadata"].get("labels") or {}).get(SHARD_LABEL)] += 1
    rows = []
    for lease in sorted(leases, key=_key):
        key = _key(lease)
        if not key.startswith(MEMBER_PREFIX):
            continue
        member, spec = key.removeprefix(MEMBER_PREFIX), lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        rows.append(
            [
                member,
                "live" if _live(lease, now) else "gone",
                _seconds(_age(spec.get("renewTime"), now)),
                str(owned.pop(member, 0)),
                "yes" if holder and holder == sharder_holder else "",
            ]
        )
    table = _table(["MEMBER", "STATE", "RENEWED", "OBJECTS", "SHARDER"], rows)
    unassigned = owned.pop(None, 0)
    stray = sum(owned.values())  # labelled for a member that has no Lease any more
    return f"{table}\nunassigned: {unassigned}; owned by members without a Lease: {stray}"


async def locks(api: client.ApiClient, namespace: str) -> str:
    """Every lock Lease but members and the sharder: key, holder, how long held, transitions."""
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for lease in sorted(await _leases(api, namespace), key=_key):
        key = _key(lease)
        if key.startswith(MEMBER_PREFIX) or key == SHARDER_KEY:
            continue
        spec = lease.get("spec") or {}
        live = _live(lease, now)
        rows.append(
            [
                key,
                (spec.get("holderIdentity") or "") if live else "(free)",
                _seconds(_age(spec.get("acquireTime"), now)) if live else "-",
                str(spec.get("leaseTransitions", 0)),
            ]
        )
    return _table(["KEY", "HOLDER", "HELD FOR", "TRANSITIONS"], rows)
