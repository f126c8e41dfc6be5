"""What a handler makes of each way an attempt can end: a condition always, an Event once per cause,
and nothing at all — no status, no Event — once the object is not this replica's any more.

The adapter here is a stand-in that raises what the test says: a bug in the
operator, or a refused token at a chosen moment, cannot be produced on
purpose through the real cloud. Events are collected instead of posted,
because posting needs a running Kopf. Objects live in ``FakeObjects``, which
fences status writes on the resourceVersion as the API server does.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
import pytest
from fake_objects import FakeObjects
from prometheus_client import REGISTRY

from lb_operator.cloud import Busy, Unauthorized
from lb_operator.handlers import changes, drift
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import Context, DeadlineExceeded, Outcome, ParentNotReady
from lb_operator.reconcile.parents import ParentWatch
from lb_operator.reconcile.resources import Resource
from lb_operator.settings import OperatorSettings
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL

ME = "replica-a"


class Failing:
    """An adapter whose parent lookup raises ``error`` (after ``before``, if given, has run)."""

    kind = "LoadBalancer"

    def __init__(self, error: Exception, before: Any = None) -> None:
        self.error = error
        self.before = before

    def parent_ref(self, obj: Any) -> None:
        return None

    async def parent(self, ctx: Context, obj: Any) -> None:
        if self.before is not None:
            self.before()
        raise self.error


def _body(conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "kind": "LoadBalancer",
        "metadata": {
            "namespace": "shop",
            "name": "web",
            "uid": "u-1",
            "generation": 1,
            "labels": {SHARD_LABEL: ME},
        },
        "spec": {"zone": "lpg1"},
        "status": {"conditions": conditions or []},
    }


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(
        changes, "post_event", lambda obj, type_, reason, message: events.append((type_, reason))
    )
    return events


@pytest.fixture
def objects() -> FakeObjects:
    return FakeObjects()


def _memo(objects: FakeObjects) -> kopf.Memo:
    settings = OperatorSettings(locking=False, sharding=False, cloud_url="http://127.0.0.1:9/v1", identity=ME)
    context = Context(cloud=None, mutex=None, settings=settings, resources=objects, shard=ME)  # type: ignore[arg-type]
    return kopf.Memo(context=context)


async def _attempt(
    error: Exception, body: dict[str, Any], objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run one attempt that fails with ``error``; the conditions it wrote (the stored object's)."""
    monkeypatch.setitem(changes.ADAPTERS, "LoadBalancer", Failing(error))
    stored = objects.put(body)
    with pytest.raises(kopf.TemporaryError):
        await changes.reconcile(_stored_body(objects, stored), 0, _memo(objects))
    return {c["type"]: c for c in objects.status_of(stored)["conditions"]}


def _stored_body(objects: FakeObjects, obj: Resource) -> dict[str, Any]:
    return objects.bodies[(obj.kind, obj.namespace, obj.name)]


async def test_an_error_nobody_expected_ends_in_a_condition_an_event_and_a_retry(
    posted: list[tuple[str, str]], objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    conditions = await _attempt(KeyError("a bug"), _body(), objects, monkeypatch)
    assert conditions["Synced"]["reason"] == "UnexpectedError"
    assert "KeyError" in conditions["Synced"]["message"]
    assert posted == [("Warning", "UnexpectedError")]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Unauthorized("list load balancers", 401, "Invalid token."), "Unauthorized"),
        (Busy("create pool", "load balancer busy", 409), "Busy"),
        (DeadlineExceeded("reading the cloud"), "DeadlineExceeded"),
        (aiohttp.ClientConnectionError("the API server restarts"), "KubernetesUnavailable"),
    ],
)
async def test_a_transient_problem_is_reported_once_not_on_every_retry(
    error: Exception,
    reason: str,
    posted: list[tuple[str, str]],
    objects: FakeObjects,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await _attempt(error, _body(), objects, monkeypatch)
    assert first["Synced"]["reason"] == reason
    assert first["Synced"]["status"] == "False"
    assert posted == [("Warning", reason)]

    await _attempt(error, _body([first["Synced"]]), objects, monkeypatch)  # the retry sees its condition
    assert posted == [("Warning", reason)], "the same cause was posted twice"


@pytest.mark.parametrize(
    "move",
    [
        {"labels": {SHARD_LABEL: "replica-b"}},  # the sharder gave it to another replica
        {"generation": 2},  # its spec changed: the newer generation's handler reports
        {"deletionTimestamp": "2026-12-02T00:00:00Z"},  # its deletion began
    ],
    ids=["moved", "newer-generation", "deleting"],
)
async def test_an_attempt_that_lost_its_object_writes_no_status_and_posts_no_event(
    move: dict[str, Any],
    posted: list[tuple[str, str]],
    objects: FakeObjects,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored = objects.put(_body())
    body = _stored_body(objects, stored)
    # While the attempt runs (a frozen replica resuming), the object changes behind its back.
    failing = Failing(Busy("create pool", "load balancer busy", 409), lambda: objects.change(stored, **move))
    monkeypatch.setitem(changes.ADAPTERS, "LoadBalancer", failing)
    await changes.reconcile(body, 0, _memo(objects))  # no retry either: it is not ours to retry
    assert objects.status_writes == []
    assert objects.refused == 1, "the status write was never attempted, so the fence was not shown to hold"
    assert posted == []


async def test_a_child_of_a_parent_named_by_uuid_backs_off_instead_of_looking_5_times_a_second(
    objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        changes.ADAPTERS, "LoadBalancer", Failing(ParentNotReady("no such LB", watched=False))
    )
    memo = _memo(objects)
    delays = []
    for retry in range(4):
        stored = objects.put(_body())
        with pytest.raises(kopf.TemporaryError) as raised:
            await changes.reconcile(_stored_body(objects, stored), retry, memo)
        delays.append(raised.value.delay)
    settings = memo["context"].settings
    assert delays == [settings.retry_delay * 2**n for n in range(4)]

    monkeypatch.setitem(changes.ADAPTERS, "LoadBalancer", Failing(ParentNotReady("not Ready yet")))
    with pytest.raises(kopf.TemporaryError) as raised:
        await changes.reconcile(_stored_body(objects, objects.put(_body())), 3, memo)
    assert raised.value.delay == changes.PARENT_RETRY, "a watched parent wakes its child: no back-off"


class Awaited:
    """An adapter whose parent is not Ready until ``ready`` is set; then the object is in sync (no lock)."""

    kind = "LoadBalancer"
    ref = ("LoadBalancer", "shop", "parent")

    def __init__(self) -> None:
        self.ready = False
        self.looks = 0

    def parent_ref(self, obj: Any) -> tuple[str, str, str]:
        return self.ref

    async def parent(self, ctx: Context, obj: Any) -> None:
        self.looks += 1
        if not self.ready:
            raise ParentNotReady("load balancer parent is not Ready")

    async def find(self, ctx: Context, obj: Any, parent: Any) -> object:
        return object()

    def changes(self, obj: Any, current: Any) -> None:
        return None

    def outcome(self, obj: Any, current: Any, parent: Any) -> Outcome:
        return Outcome(status={}, ready=True, reason="Reconciled", message="in sync")


@dataclass
class WaitingChild:
    """A LoadBalancer handled with the ``Awaited`` adapter; its parent's watch is woken by the test."""

    awaited: Awaited
    memo: kopf.Memo
    parents: ParentWatch
    stored: Resource

    def parent_gets_ready(self) -> None:
        self.awaited.ready = True
        self.parents.wake(Awaited.ref)


@pytest.fixture
def child(objects: FakeObjects, monkeypatch: pytest.MonkeyPatch) -> WaitingChild:
    awaited = Awaited()
    monkeypatch.setitem(changes.ADAPTERS, "LoadBalancer", awaited)
    monkeypatch.setattr(engine, "PARENT_FIRST_WAIT", 0.05)
    memo = _memo(objects)
    parents = memo["context"].parents = ParentWatch(mirror=object())  # type: ignore[arg-type]  # woken by hand
    made_before = {**_body(), "status": {"conditions": [], "uuid": "cloud-1"}}  # in sync: no lock to take
    return WaitingChild(awaited, memo, parents, objects.put(made_before))


def _ready_reasons(objects: FakeObjects) -> list[str]:
    """The Ready reason of each status write that landed, in order."""
    return [
        next(c["reason"] for c in written["conditions"] if c["type"] == "Ready")
        for _, written in objects.status_writes
    ]


async def test_a_child_says_it_waits_for_its_parent_and_waits_on_in_the_same_attempt(
    child: WaitingChild, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = objects.patch_status

    async def parent_ready_once_said(obj: Resource, version: str, status: dict[str, Any]) -> str:
        # Once the child has said it waits, the parent turns Ready and its watch wakes the child.
        written = await write(obj, version, status)
        child.parent_gets_ready()
        return written

    monkeypatch.setattr(objects, "patch_status", parent_ready_once_said)
    async with asyncio.timeout(5):
        await changes.reconcile(_stored_body(objects, child.stored), 0, child.memo)  # no TemporaryError
    assert _ready_reasons(objects) == ["ParentNotReady", "Reconciled"]
    assert objects.refused == 0, "the second write was fenced on a version the first had made stale"


@pytest.mark.parametrize("failure", ["unreachable", "timeout", "not ours"])
async def test_a_child_whose_waiting_could_not_be_said_waits_on_or_ends_quietly_if_not_ours(
    failure: str, child: WaitingChild, objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = objects.patch_status

    async def first_write_fails(obj: Resource, version: str, status: dict[str, Any]) -> str:
        monkeypatch.setattr(objects, "patch_status", write)
        child.parent_gets_ready()
        if failure == "not ours":  # another replica has it now: the write is refused, the read says why
            body = copy.deepcopy(_stored_body(objects, child.stored))
            body["metadata"]["labels"] = {SHARD_LABEL: "replica-b"}
            objects.put(body)
            return await write(obj, version, status)
        raise aiohttp.ClientConnectionError("refused") if failure == "unreachable" else TimeoutError()

    monkeypatch.setattr(objects, "patch_status", first_write_fails)
    async with asyncio.timeout(5):
        await changes.reconcile(_stored_body(objects, child.stored), 0, child.memo)  # no retry either
    assert _ready_reasons(objects) == ([] if failure == "not ours" else ["Reconciled"])


def _checked(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    observed: int | None = 1,
    ready: tuple[str, str] = ("True", "Reconciled"),
    synced: str = "True",
    deleting: bool = False,
) -> dict[str, Any]:
    """A LoadBalancer as the drift check sees it: handled at generation ``observed`` unless told."""
    status, reason = ready
    body = _body(
        [
            {"type": "Ready", "status": status, "reason": reason, "observedGeneration": observed},
            {"type": "Synced", "status": synced, "reason": "Reconciled", "observedGeneration": observed},
        ]
    )
    metadata = body["metadata"]
    metadata["labels"] = labels or {}
    metadata["annotations"] = annotations or {}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    if observed is not None:
        body["status"]["observedGeneration"] = observed
    return body


STALE_PROGRESS = {"lboperator.dev/reconcile": '{"retries": 3, "delayed": "2026-12-01T00:00:00"}'}


@pytest.mark.parametrize(
    ("body", "shard", "due"),
    [
        (_checked(), None, True),
        (_checked({SHARD_LABEL: "me"}), "me", True),
        # Kopf's progress, written late by a replica that lost the object, does not switch the check off:
        (_checked(annotations=STALE_PROGRESS), None, True),
        (_checked(observed=None), None, False),  # never handled yet
        (_checked(observed=0), None, False),  # its spec changed since
        (_checked(synced="False"), None, False),  # its last attempt failed: its handler retries
        (_checked(ready=("False", "Provisioning")), None, False),  # being built: its handler looks
        (_checked(deleting=True), None, False),
        (_checked(ready=("False", "CloudRejected")), None, False),
        (_checked({SHARD_LABEL: "me", DRAIN_LABEL: "true"}), "me", False),  # being drained away
        (_checked({SHARD_LABEL: "other"}), "me", False),  # gone to another replica
        (_checked({}), "me", False),  # let go of
    ],
)
def test_the_drift_check_looks_only_at_objects_at_rest_on_this_replica(
    body: dict[str, Any], shard: str | None, due: bool
) -> None:
    assert drift.drift_check_due(body, shard) is due


async def test_a_degraded_load_balancer_is_a_warning_once_and_looked_at_again_later(
    posted: list[tuple[str, str]], objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def degraded(*_: Any, **__: Any) -> Outcome:
        return Outcome({"uuid": "lb-1", "cloudStatus": "error"}, False, "Degraded", "it is `error`")

    def counted() -> float:
        labels = {"kind": "LoadBalancer", "trigger": "change", "outcome": "Degraded"}
        return REGISTRY.get_sample_value("lbop_reconciles_total", labels) or 0.0

    monkeypatch.setattr(changes.engine, "reconcile", degraded)
    before = counted()
    stored = objects.put(_body())
    with pytest.raises(kopf.TemporaryError) as retry:
        await changes.reconcile(_stored_body(objects, stored), 0, _memo(objects))
    assert retry.value.delay == changes.DEGRADED_RECHECK
    assert posted == [("Warning", "Degraded")]
    assert counted() - before == 1

    with pytest.raises(kopf.TemporaryError):  # still degraded at the next look: no second Event
        await changes.reconcile(_stored_body(objects, stored), 1, _memo(objects))
    assert posted == [("Warning", "Degraded")]
    assert counted() - before == 2


async def test_a_reconcile_whose_status_could_not_be_written_is_retried_not_left_unsaid(
    posted: list[tuple[str, str]], objects: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cloud is right, but the status still says Provisioning: nothing else would look again (not at
    # rest for the drift check, handled at its generation for the nudger). The attempt must be retried.
    async def ready(*_: Any, **__: Any) -> Outcome:
        return Outcome({"uuid": "lb-1", "cloudStatus": "running"}, True, "Reconciled", "in sync")

    monkeypatch.setattr(changes.engine, "reconcile", ready)
    stored = objects.put(_body())
    objects.unreachable = 1
    with pytest.raises(kopf.TemporaryError):
        await changes.reconcile(_stored_body(objects, stored), 0, _memo(objects))
    assert objects.status_writes == []

    await changes.reconcile(_stored_body(objects, stored), 1, _memo(objects))  # the retry writes it
    assert objects.status_of(stored)["uuid"] == "lb-1"
