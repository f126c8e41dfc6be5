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
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.handlers.journal import Journal
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


class Conflicting(Acknowledgements):
    """The API server while the object changes under a drain: the first label removal waits for the
    test (which changes the object meanwhile), then fails on the newer version (409); a read
    answers ``current``, the API's newest body, which the mirror may not have shown yet. Records
    each removal it takes: the version and whether a handler of this replica ran."""

    def __init__(self, drainer: Drainer) -> None:
        super().__init__()
        self.drainer = drainer
        self.first = asyncio.Event()
        self.proceed = asyncio.Event()
        self.current: dict[str, Any] = {}
        self.taken: list[tuple[str, bool]] = []

    async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not self.first.is_set():
            self.first.set()
            await self.proceed.wait()
            raise ApiException(status=409, reason="Conflict")
        self.taken.append((args[5]["metadata"]["resourceVersion"], self.drainer.busy("u1")))
        return await super().patch_namespaced_custom_object(*args, **kwargs)

    async def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(self.current)


async def _first_acknowledgement_on_its_way(fleet: Any) -> Conflicting:
    api = Conflicting(fleet.drainer)
    fleet.drainer._objects = api
    fleet.mirror._deliver(KIND, "ADDED", _body(3, {SHARD_LABEL: ME}))
    fleet.mirror._deliver(KIND, "MODIFIED", _body(4, {SHARD_LABEL: ME, DRAIN_LABEL: "true"}))
    await asyncio.wait_for(api.first.wait(), 5)
    return api


async def test_a_drain_called_off_and_issued_again_waits_for_the_handlers_started_between(fleet: Any) -> None:
    api = await _first_acknowledgement_on_its_way(fleet)
    fleet.mirror._deliver(KIND, "MODIFIED", _body(5, {SHARD_LABEL: ME}))  # the drain called off
    async with running(fleet.memo, _body(5, {SHARD_LABEL: ME})):  # so a handler may start here
        api.current = _body(6, {SHARD_LABEL: ME, DRAIN_LABEL: "true"})  # and the drain comes again
        fleet.mirror._deliver(KIND, "MODIFIED", copy.deepcopy(api.current))
        api.proceed.set()
        await _settle()
        assert api.taken == [], "let go of an object while a handler started here ran on it"
    await _settle()
    assert api.taken == [("6", False)], "the drain issued again was not acknowledged after the handler"


async def test_a_refused_acknowledgement_hands_over_to_the_newer_version_the_mirror_has(fleet: Any) -> None:
    # The newer version's event came while the first acknowledgement ran, so it was passed over; a
    # read of the object at that moment may show anything (here: the drain called off in between).
    api = await _first_acknowledgement_on_its_way(fleet)
    fleet.mirror._deliver(KIND, "MODIFIED", _body(6, {SHARD_LABEL: ME, DRAIN_LABEL: "true"}))
    api.current = _body(5, {SHARD_LABEL: ME})
    api.proceed.set()
    await _settle()
    assert api.taken == [("6", False)], "the drain was never acknowledged: the sharder would wait for it"


async def test_only_a_version_the_mirror_has_shown_is_acknowledged(fleet: Any) -> None:
    # A version the mirror has not shown may be followed by an older event (a call-off) that lets a
    # handler start here after the acknowledgement.
    api = await _first_acknowledgement_on_its_way(fleet)
    api.current = _body(6, {SHARD_LABEL: ME, DRAIN_LABEL: "true"})  # the API's newest; the mirror is behind
    api.proceed.set()
    await _settle()
    assert api.taken == [], "acknowledged a version the mirror had not shown"
    fleet.mirror._deliver(KIND, "MODIFIED", _body(5, {SHARD_LABEL: ME}))
    fleet.mirror._deliver(KIND, "MODIFIED", _body(6, {SHARD_LABEL: ME, DRAIN_LABEL: "true"}))
    await _settle()
    assert api.taken == [("6", False)]


@pytest.mark.parametrize("steps", [0, 1, 2])
async def test_a_run_withdrawn_as_it_begins_journals_its_end(tmp_path: Path, steps: int) -> None:
    # The drain withdraws a change that has not begun by cancelling its task, at whatever step it is:
    # before it ran at all (no line), or once it began (its "end" follows its "start"). A run whose
    # "start" has no "end" would show this replica acting on the object ever after.
    journal = Journal(tmp_path / "journal")
    memo = kopf.Memo(journal=journal)
    journal.record("u2", "write")

    async def run() -> None:
        async with running(memo, _body(3, {})):
            await asyncio.sleep(60)

    task = asyncio.create_task(run())
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    journal.close()
    lines = [
        (entry["uid"], entry["event"])
        for entry in map(json.loads, (tmp_path / "journal").read_text().splitlines())
    ]
    began = [("u1", "start"), ("u1", "end")] if steps else []
    assert lines == [("u2", "write"), *began]
