"""Status and conditions as the Kubernetes API conventions describe them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, MutableMapping
from typing import Any

from lb_operator.reconcile.resources import Resource


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


def write(
    patch: MutableMapping[str, Any],
    obj: Resource,
    *,
    ready: tuple[bool, str, str] | None,
    synced: tuple[bool, str, str],
    fields: Mapping[str, Any] | None = None,
) -> None:
    """Put conditions (and status fields) into Kopf's patch; ``ready=None`` keeps Ready as it was."""
    conditions = [condition(obj, "Synced", *synced)]
    if ready is not None:
        conditions.insert(0, condition(obj, "Ready", *ready))
    else:
        conditions += [c for c in obj.status.get("conditions") or [] if c.get("type") == "Ready"]
    status = patch.setdefault("status", {})
    status.update(fields or {})
    status["conditions"] = conditions
    status["observedGeneration"] = obj.generation
