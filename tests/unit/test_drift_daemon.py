"""The drift daemon of an object ends the moment the object leaves this replica, not at the next check.

Kopf keeps a daemon (or timer) of an object that left the label-selected
watch running with the body from before; ``drift.on_event`` marks the
object's memo departed on its DELETED event. Kopf's daemon flag is stood in
for by an ``asyncio.Event`` with the same ``wait()``: the stop request is
Kopf's to make, the test only needs it not to come.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf

from lb_operator.handlers import drift
from lb_operator.reconcile.engine import Context
from lb_operator.settings import OperatorSettings


class NeverStopped:
    """Kopf's ``DaemonStopped``, as far as the daemon uses it: ``wait()`` until Kopf stops it (never here)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()


def _memo() -> kopf.Memo:
    settings = OperatorSettings(cloud_url="http://127.0.0.1:9/v1", identity="a", resync_interval=3600)
    return kopf.Memo(context=Context(cloud=None, mutex=None, settings=settings, resources=None))  # type: ignore[arg-type]


async def test_a_departed_object_ends_its_drift_daemon_at_once() -> None:
    memo = _memo()
    body = {"kind": "LoadBalancer", "metadata": {"uid": "u-1", "generation": 1}, "spec": {}, "status": {}}
    daemon = asyncio.create_task(drift.on_drift(body, memo, NeverStopped()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert not daemon.done()

    await drift.on_event("MODIFIED", body, memo)
    await asyncio.sleep(0)
    assert not daemon.done(), "a change is no departure"

    await drift.on_event("DELETED", body, memo)  # left this replica's watch (or was deleted)
    async with asyncio.timeout(1):  # the check interval is an hour: only the departure can end it
        await daemon


async def test_objects_do_not_share_a_departure() -> None:
    base = _memo()
    one, other = copy.copy(base), copy.copy(base)  # Kopf's memory of each object: copy.copy of the operator's
    await drift.on_event("DELETED", {"metadata": {"uid": "u-1"}}, one)
    assert drift.departure(one).is_set()
    assert not drift.departure(other).is_set()


def _failed_check() -> dict[str, Any]:
    """An object whose last attempt — a drift check's — failed: handled at its generation, not at rest."""
    conditions = [
        {"type": "Ready", "status": "False", "reason": "ParentNotReady", "observedGeneration": 1},
        {"type": "Synced", "status": "False", "reason": "ParentNotReady", "observedGeneration": 1},
    ]
    return {
        "kind": "LoadBalancerPoolMember",
        "metadata": {"uid": "u-1", "generation": 1},
        "spec": {},
        "status": {"observedGeneration": 1, "conditions": conditions},
    }


def test_a_check_that_failed_is_retried_by_its_daemon_not_left_for_nobody() -> None:
    # Kopf retries only its change handlers: an object the drift check left not at rest must be retried
    # by the daemon itself (the tree re-created under a new load balancer waited for nobody otherwise).
    assert not drift.drift_check_due(_failed_check(), None)
    assert drift.drift_check_due(_failed_check(), None, retrying=True)
