"""What wraps every handler run: drains see it, the journal records it, a drained object is refused."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf

from lb_operator.handlers.journal import Journal
from lb_operator.sharding.drain import refuses
from lb_operator.sharding.replica import Replica

DRAINED_RETRY = 5.0
"""Seconds before Kopf would look again at an object being drained away (it is another replica's by then)."""


@contextlib.asynccontextmanager
async def running(memo: kopf.Memo, body: Mapping[str, Any]) -> AsyncIterator[None]:
    """Mark a handler as running on this object (a drain waits for it); refuse one being drained away."""
    replica: Replica | None = memo.get("replica")
    journal: Journal | None = memo.get("journal")
    uid = str(body["metadata"]["uid"])
    if drained(memo, body):
        raise kopf.TemporaryError("moving to another replica; it will continue there", delay=DRAINED_RETRY)
    with replica.drainer.working_on(uid) if replica is not None else contextlib.nullcontext():
        if journal is not None:
            journal.record(uid, "start")  # no await: a run cancelled before this line never began
        try:
            yield
        finally:
            if journal is not None:
                journal.record(uid, "end")


def drained(memo: kopf.Memo, body: Mapping[str, Any]) -> bool:
    """Whether the object is being drained away, or was let go: by its labels, or — should the body
    be older than the drain — by what this replica's drainer has seen."""
    replica: Replica | None = memo.get("replica")
    if replica is None:  # no sharding: no drain either (a label left behind must not block a deletion)
        return False
    return refuses(body) or replica.drainer.letting_go(str(body["metadata"]["uid"]))


def busy(memo: kopf.Memo, uid: str) -> bool:
    """Whether a handler of this replica runs on ``uid`` now (known with sharding only)."""
    replica: Replica | None = memo.get("replica")
    return replica is not None and replica.drainer.busy(uid)
