"""Kopf's own bookkeeping on each object, kept to what costs no extra write.

Kopf decides whether a watch event is a change to handle by comparing the
object with a *diff-base*, the state it last handled, which its stock
storages write on the object after every handling (an annotation or a status
field): one more API write per handled change, unfenced (a replica that was
frozen or cut off writes it late, over the new owner's view).

Here the diff-base is the status the reconcile writes anyway, fenced on the
resourceVersion that proved ownership (``handlers.status``): an object whose
status says it was handled at its current generation — Ready and Synced, or
refused by the cloud for good — is at rest, and Kopf sees no change in it;
any other object is new to Kopf, which runs the change handler (create,
update and resume all run the same reconcile). Nothing is stored, so Kopf's
patch after a first-try success is empty and not sent; a late write of
another replica cannot make an object look handled.

What this changes against the stock storage: an edit of labels or
annotations alone (the generation unchanged) runs no handler — none of ours
reads them; the spec is all the reconcile depends on.

Kopf's progress (retry counts and delays) stays in annotations, written only
while a handler retries; the ``kopf-managed`` marker Kopf adds beside the
first record it stores is left out: it would cost a write on every object
handled at the first try (Kopf stores and purges the record in one patch, but
keeps the marker), and only tells other Kopf-based operators to leave our
annotations out of their diffs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from lb_operator.api import GROUP

REFUSED_FOR_GOOD = "CloudRejected"
"""The Ready reason of a generation the cloud refused: only a new generation changes it."""


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


RETRY_RECORD = f"{GROUP}/reconcile"
"""Kopf's progress annotation of the change handler (id ``reconcile``): there only while it retries."""


def handled(body: Mapping[str, Any]) -> bool:
    """Whether the status says the object's current generation was handled to the end — and Kopf has no
    retry of the change handler pending on it.

    The change may end while no handler awaits it (``handlers.pending``: its
    handler's deadline passed, Kopf's retry is on its way). Its status then
    says handled, yet Kopf's retry record is still there: the object is not
    at rest for Kopf until its handler has come back, taken the result and
    let Kopf clear the record. A record left by a replica that lost the object
    costs one handler run here, which clears it.
    """
    metadata = body.get("metadata") or {}
    if RETRY_RECORD in (metadata.get("annotations") or {}):
        return False
    generation = metadata.get("generation")
    status = body.get("status") or {}
    if generation is None or status.get("observedGeneration") != generation:
        return False
    ready, synced = _condition(status, "Ready"), _condition(status, "Synced")
    if ready.get("observedGeneration") != generation:
        return False
    if ready.get("reason") == REFUSED_FOR_GOOD:
        return True
    return (
        ready.get("status") == "True"
        and synced.get("status") == "True"
        and synced.get("observedGeneration") == generation
    )


class HandledInStatus(kopf.DiffBaseStorage):
    """The diff-base is the object itself once its status says it was handled; nothing otherwise."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return self.build(body=body) if handled(body) else None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass  # the fenced status write is the record


class UnmarkedProgress(kopf.AnnotationsProgressStorage):
    """Kopf's progress annotations without the ``kopf-managed`` marker."""

    def __init__(self) -> None:
        super().__init__(prefix=GROUP)

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        pass
