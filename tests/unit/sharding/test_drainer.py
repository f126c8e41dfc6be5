"""A drained object: no handler starts on it here once the drain is seen, whatever body it is handed.

Kopf may hand a handler a body older than the drain label (its retry of an
attempt is woken by its own retry record, written just before the sharder's
label). The drainer's acknowledgement gives the object to another replica,
so a handler that started here after it would work beside the new owner's.
The mirror is the real one, fed by the test; the acknowledgement is the
API request a fake records (the real one is in the replica suites).
"""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from lb_operator.handlers.running import running
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL
from lb_operator.sharding.drain import Drainer
from lb_operator.sharding.streams import Mirror

ME = "replica-a"
KIND = "LoadBalancerPoolMember"


def _body(version: int, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": KIND,
        "metadata": {
            "uid": "u1",
            "namespace": "shop",
            "name": "m1",
            "resourceVersion": str(version),
            "labels": dict(labels),
        },
    }


class Acknowledgements:
    """Stands in for the API server's answer to the drainer's label removal: records it, succeeds."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.patches.append(copy.deepcopy(args[5]))
        return {}


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def fleet() -> Any:
    mirror = Mirror(None, ["shop"])
    drainer = Drainer(None, ME, mirror)  # type: ignore[arg-type]  # no API client: requests go to the fake
    acks = Acknowledgements()
    drainer._objects = acks  # type: ignore[assignment]
    task = asyncio.create_task(drainer.run())
    await _settle()
    yield SimpleNamespace(
        mirror=mirror, drainer=drainer, acks=acks, memo={"replica": SimpleNamespace(drainer=drainer)}
    )
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_handler_handed_a_body_older_than_the_drain_does_not_start(fleet: Any) -> None:
    stale = _body(3, {SHARD_LABEL: ME})  # what Kopf hands its retry: ours, no drain label
    fleet.mirror._deliver(KIND, "ADDED", _body(3, {SHARD_LABEL: ME}))
    fleet.mirror._deliver(KIND, "MODIFIED", _body(4, {SHARD_LABEL: ME, DRAIN_LABEL: "true"}))
    await _settle()
    assert len(fleet.acks.patches) == 1, "the drainer did not let go of an idle object"
    with pytest.raises(kopf.TemporaryError, match="another replica"):
        async with running(fleet.memo, stale):
            pytest.fail("a handler started on an object this replica has let go")
    fleet.mirror._deliver(KIND, "MODIFIED", _body(5, {SHARD_LABEL: "replica-b"}))  # its new owner's now
    with pytest.raises(kopf.TemporaryError):
        async with running(fleet.memo, stale):
            pytest.fail("a handler started on another replica's object")


async def test_an_object_given_back_is_handled_here_again(fleet: Any) -> None:
    fleet.mirror._deliver(KIND, "ADDED", _body(4, {SHARD_LABEL: ME, DRAIN_LABEL: "true"}))
    await _settle()
    fleet.mirror._deliver(KIND, "MODIFIED", _body(5, {}))
    fleet.mirror._deliver(KIND, "MODIFIED", _body(6, {SHARD_LABEL: ME}))  # the sharder gave it back
    ran = False
    async with running(fleet.memo, _body(6, {SHARD_LABEL: ME})):
        ran = True
    assert ran


async def test_a_handler_running_when_the_drain_comes_holds_the_acknowledgement(fleet: Any) -> None:
    fleet.mirror._deliver(KIND, "ADDED", _body(3, {SHARD_LABEL: ME}))
    async with running(fleet.memo, _body(3, {SHARD_LABEL: ME})):
        fleet.mirror._deliver(KIND, "MODIFIED", _body(4, {SHARD_LABEL: ME, DRAIN_LABEL: "true"}))
        await _settle()
        assert fleet.acks.patches == [], "let go of an object while a handler ran on it"
    await _settle()
    assert len(fleet.acks.patches) == 1


async def test_without_sharding_a_leftover_drain_label_blocks_nothing() -> None:
    # No replica (sharding off): no drainer would ever take the label away, so it must not stop a
    # deletion or a drift check from running.
    ran = False
    async with running({}, _body(3, {SHARD_LABEL: ME, DRAIN_LABEL: "true"})):
        ran = True
    assert ran
