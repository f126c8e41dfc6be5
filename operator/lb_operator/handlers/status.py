"""Status and conditions as the Kubernetes API conventions describe them, written only by the owner.

Why not Kopf's ``patch``: Kopf applies it after the handler returns, with no
precondition, whoever the object belongs to by then. A replica that was
frozen or cut off while another took the object over would write its old
view over the new owner's. Here every status write carries the
resourceVersion of a read that showed this replica owns the object at this
generation (the handler's own body, or the fresh read before a cloud
mutation); the API server refuses it (409) if anything changed since. Then
the object is read again: still ours at this generation → the write is
repeated on the new version; not → nothing is written (``NoLongerOurs``).
A status equal to what is there is not written at all.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from lb_operator.reconcile.engine import Context, NoLongerOurs, prove, why_not_ours
from lb_operator.reconcile.resources import Resource, VersionConflict

CONFLICTS = 5
"""Writes refused because the object changed meanwhile, before a status write gives up for this attempt."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(obj: Resource, kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    """A condition; ``lastTransitionTime`` moves only when its status flips."""
    status = "True" if ok else "False"
    previous = next((c for c in obj.status.get("conditions") or [] if c.get("type") == kind), None)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or _now(),
        "observedGeneration": obj.generation,
    }


def stanza(
    obj: Resource,
    *,
    ready: tuple[bool, str, str] | None,
    synced: tuple[bool, str, str],
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status to merge in: ``fields``, the conditions, ``observedGeneration``.

    ``ready=None`` keeps Ready as it was.
    """
    conditions = [condition(obj, "Synced", *synced)]
    if ready is not None:
        conditions.insert(0, condition(obj, "Ready", *ready))
    else:
        conditions += [c for c in obj.status.get("conditions") or [] if c.get("type") == "Ready"]
    return {**(fields or {}), "conditions": conditions, "observedGeneration": obj.generation}


def unchanged(status: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether merging ``status`` into ``current`` would change nothing."""
    return all(current.get(key) == value for key, value in status.items())


async def publish(
    ctx: Context,
    obj: Resource,
    status: Mapping[str, Any],
    basis: Resource,
    *,
    prove_if_unchanged: bool = False,
) -> Resource:
    """Merge ``status`` into ``obj``'s status, fenced on ``basis`` (a read that proved ownership); return
    the object as it is now (status and resourceVersion): the basis of a later write in the same attempt.

    ``NoLongerOurs`` when the object, read again after a refusal, is gone,
    being deleted, owned by another replica or at another generation.
    ``VersionConflict`` when it kept changing for ``CONFLICTS`` writes (a
    transient problem: the handler retries). API errors propagate. A status
    equal to what is there is not written; with ``prove_if_unchanged`` (an
    Event is to follow) ownership is then proven by a fresh read instead.
    """
    current, version = basis.status, basis.resource_version
    for _ in range(CONFLICTS):
        if unchanged(status, current):
            if prove_if_unchanged:
                await prove(ctx, obj)
            return dataclasses.replace(obj, status=dict(current), resource_version=version)
        try:
            version = await ctx.resources.patch_status(obj, version, status)
            await ctx.wrote(obj, "status")  # journaled once taken: a refused (fenced) write is no write
            return dataclasses.replace(obj, status={**current, **status}, resource_version=version)
        except VersionConflict:
            now = await ctx.resources.get(obj.kind, obj.namespace, obj.name)
        except LookupError:
            now = None
        why = why_not_ours(ctx, obj, now)
        if why is not None:
            raise NoLongerOurs(obj, why, gone=now is None)
        assert now is not None
        current, version = now.status, now.resource_version
    raise VersionConflict(f"{obj.ref} kept changing; its status is written on the next attempt")
