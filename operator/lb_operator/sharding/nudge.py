"""A safety net for objects no handler will look at again: make Kopf see them as new.

Why: Kopf runs a handler only on a watch event (for an object whose status
does not say it was handled at its generation: ``handlers.bookkeeping``),
and retries as the progress it stored on the object says. That can fail
the replica that owns the object now: an event missed across an API-server
restart (no 410, so no relist), a retry Kopf scheduled and never ran, or a
late progress write by a replica that lost the object (frozen, cut off) —
Kopf's own patches carry no precondition and cannot be fenced. Then no
event comes again, and the object is stranded: not handled, or handled by
nobody at its generation.

Every ``interval`` this looks at the objects labelled for this replica in
the replica's ``Mirror`` (its own watches, not Kopf's: no LIST) and, for
each one whose current generation no handler has reported
(``status.observedGeneration``, which only the owner writes) or whose
scheduled retry is overdue by a whole interval, and that was already so at
the previous look with no handler of this replica running on it, removes
Kopf's stored state (its progress, and the diff-base annotation that
versions before ``handlers.bookkeeping`` wrote; resourceVersion-checked)
and writes an annotation: Kopf then sees the event and runs its handler. An object
being deleted, with this operator's finalizer and no deletion retry
scheduled, gets only the annotation written: Kopf runs a deletion on any
event. In steady state every object is handled and this costs no request.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.sharding import DRAIN_LABEL, FINALIZER, SHARD_LABEL
from lb_operator.sharding.streams import API_TIMEOUT, TRANSIENT, Mirror

logger = logging.getLogger(__name__)

NUDGE_ANNOTATION = "lboperator.dev/nudged-at"
KOPF_STATE = (f"{GROUP}/reconcile", f"{GROUP}/last-handled-configuration")
"""Kopf's progress of the change handler (id ``reconcile``) and its diff-base of older versions: removed by
a nudge."""


def unhandled(body: dict[str, Any]) -> bool:
    """True when no handler has reported on the object's current generation."""
    metadata = body.get("metadata") or {}
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed != metadata.get("generation") and "deletionTimestamp" not in metadata


def retry_overdue(
    body: dict[str, Any], now: datetime.datetime, grace: float, handler: str = "reconcile"
) -> bool:
    """True when Kopf scheduled a retry of ``handler`` more than ``grace`` seconds ago and it never ran:
    its progress annotation (``delayed``) is in the past, so the retry was lost (e.g. with an event an
    API-server restart swallowed) and only a new event brings the object back."""
    metadata = body.get("metadata") or {}
    raw = (metadata.get("annotations") or {}).get(f"{GROUP}/{handler}")
    deleting = "deletionTimestamp" in metadata
    if not raw or deleting != (handler == "delete"):
        return False  # a change's retry does not matter once the deletion began, nor the other way round
    try:
        delayed = json.loads(raw).get("delayed")
        when = datetime.datetime.fromisoformat(str(delayed)) if delayed else None
    except (ValueError, AttributeError):
        return False
    if when is None:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return (now - when).total_seconds() > grace


def deletion_neglected(body: dict[str, Any], now: datetime.datetime, grace: float) -> bool:
    """True for an object being deleted that still has this operator's finalizer and whose deletion
    no retry is scheduled for (no progress recorded, or its retry overdue): Kopf will not come back
    to it by itself. Its handler, if one runs, makes the caller leave it alone."""
    metadata = body.get("metadata") or {}
    if "deletionTimestamp" not in metadata or FINALIZER not in (metadata.get("finalizers") or []):
        return False
    recorded = f"{GROUP}/delete" in (metadata.get("annotations") or {})
    return not recorded or retry_overdue(body, now, grace, handler="delete")


class Nudger:
    """Every ``interval`` seconds: nudge this replica's objects that stayed unhandled for a whole interval."""

    def __init__(
        self,
        api: client.ApiClient,
        identity: str,
        mirror: Mirror,
        busy: Callable[[str], bool],
        interval: float = 30.0,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._identity = identity
        self._mirror = mirror
        self._plurals = {kind.kind: kind.plural for kind in ALL_KINDS}
        self._busy = busy
        self._interval = interval
        self._suspects: set[str] = set()  # unhandled at the previous look
        self.nudged = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.look()
            except TRANSIENT as error:
                logger.info("nudge: a write failed (%s); next time", error)

    async def look(self) -> None:
        """One look: nudge the objects unhandled now and at the previous look."""
        if not self._mirror.synced():
            return  # the view is not complete yet: look next time
        suspects: set[str] = set()
        now = datetime.datetime.now(datetime.UTC)
        for body in self._mirror.bodies():
            metadata = body["metadata"]
            labels = metadata.get("labels") or {}
            if labels.get(SHARD_LABEL) != self._identity or DRAIN_LABEL in labels:
                continue
            uid = str(metadata["uid"])
            neglected = (
                unhandled(body)
                or retry_overdue(body, now, self._interval)
                or deletion_neglected(body, now, self._interval)
            )
            if not neglected or self._busy(uid):
                continue
            suspects.add(uid)
            if uid in self._suspects:
                await self._nudge(self._plurals[str(body["kind"])], body)
        self._suspects = suspects

    async def _nudge(self, plural: str, body: dict[str, Any]) -> None:
        """Remove Kopf's state of ``body`` if it is unchanged since the look; Kopf then handles it as new."""
        metadata = body["metadata"]
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        # Being deleted: any event makes Kopf run the deletion (it needs no change); otherwise Kopf's
        # stored state goes, so that it sees the object as new.
        deleting = "deletionTimestamp" in metadata
        annotations: dict[str, str | None] = {} if deleting else dict.fromkeys(KOPF_STATE)
        annotations[NUDGE_ANNOTATION] = now
        patch = {"metadata": {"resourceVersion": metadata["resourceVersion"], "annotations": annotations}}
        try:
            await self._objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                metadata["namespace"],
                plural,
                metadata["name"],
                patch,
                _content_type="application/merge-patch+json",
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise
            return  # gone, or changed since the look: the next look judges it again
        self.nudged += 1
        logger.warning(
            "nudged %s %s/%s: labelled for this replica but not handled for %ss; Kopf handles it as new",
            plural,
            metadata["namespace"],
            metadata["name"],
            self._interval,
        )
