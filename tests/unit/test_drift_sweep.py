"""The drift sweep: each object at rest on this replica is checked once per interval, a failed check
sooner, and nothing else is checked. The view stands in for the Mirror (what its watches would show);
the check stands in for the reconcile (tested in test_reconcile_flow and on the real API server)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf
import pytest

from lb_operator.handlers import drift
from lb_operator.handlers.drift import DriftSweep
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL

ME = "replica-a"


def _body(uid: str, *, ready: bool = True, shard: str = ME, **metadata: Any) -> dict[str, Any]:
    state = "True" if ready else "False"
    conditions = [
        {"type": "Ready", "status": state, "reason": "InSync" if ready else "Busy", "observedGeneration": 1},
        {"type": "Synced", "status": state, "reason": "Reconciled", "observedGeneration": 1},
    ]
    return {
        "kind": "LoadBalancerPoolMember",
        "metadata": {"uid": uid, "generation": 1, "labels": {SHARD_LABEL: shard}, **metadata},
        "spec": {},
        "status": {"observedGeneration": 1, "conditions": conditions},
    }


class View:
    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.objects = list(bodies)

    def bodies(self) -> list[dict[str, Any]]:
        return list(self.objects)


class Checks:
    def __init__(self, failing: set[str] | None = None) -> None:
        self.seen: list[tuple[str, int]] = []
        self.failing = failing or set()

    async def __call__(self, body: Mapping[str, Any], retries: int) -> None:
        uid = body["metadata"]["uid"]
        self.seen.append((uid, retries))
        if uid in self.failing:
            raise kopf.TemporaryError("the cloud is busy", delay=0.01)


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sweep's clock, moved by the test (the spread of first checks is random: set to the end)."""
    now = [0.0]
    monkeypatch.setattr(drift.random, "uniform", lambda low, high: high)
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: now[0])
    return now


async def _sweep_at(sweep: DriftSweep, clock: list[float], at: float) -> None:
    clock[0] = at
    sweep.sweep()
    for _ in range(5):
        await asyncio.sleep(0)


async def test_each_object_at_rest_is_checked_once_per_interval(clock: list[float]) -> None:
    checks = Checks()
    sweep = DriftSweep(View(_body("a"), _body("b")), 100.0, ME, checks)  # type: ignore[arg-type]
    await _sweep_at(sweep, clock, 0.0)
    assert checks.seen == [], "a check came before its place in the interval"
    await _sweep_at(sweep, clock, 100.0)
    assert sorted(checks.seen) == [("a", 0), ("b", 0)]
    await _sweep_at(sweep, clock, 150.0)
    assert len(checks.seen) == 2, "checked twice within one interval"
    await _sweep_at(sweep, clock, 200.0)
    assert len(checks.seen) == 4


async def test_a_failed_check_is_retried_before_the_next_interval(clock: list[float]) -> None:
    checks = Checks(failing={"a"})
    sweep = DriftSweep(View(_body("a")), 100.0, ME, checks)  # type: ignore[arg-type]
    await _sweep_at(sweep, clock, 0.0)
    await _sweep_at(sweep, clock, 100.0)
    # The failed check wrote Synced=False: not at rest, but the sweep owns its retry.
    sweep._mirror.objects = [_body("a", ready=False)]  # type: ignore[attr-defined]
    await _sweep_at(sweep, clock, 100.0 + drift.TICK)
    assert checks.seen == [("a", 0), ("a", 1)]


@pytest.mark.parametrize(
    "body",
    [
        _body("x", ready=False),  # its change handler's: not at rest
        _body("x", shard="replica-b"),  # another replica's
        _body("x", labels={SHARD_LABEL: ME, DRAIN_LABEL: "replica-b"}),  # being drained away
        _body("x", deletionTimestamp="2026-12-03T00:00:00Z"),  # its deletion's
    ],
)
async def test_what_is_not_at_rest_here_is_not_checked(clock: list[float], body: dict[str, Any]) -> None:
    checks = Checks()
    sweep = DriftSweep(View(body), 100.0, ME, checks)  # type: ignore[arg-type]
    for at in (0.0, 100.0, 200.0):
        await _sweep_at(sweep, clock, at)
    assert checks.seen == []


async def test_an_object_a_handler_works_on_waits_for_the_next_interval(clock: list[float]) -> None:
    checks, working = Checks(), {"a"}
    sweep = DriftSweep(View(_body("a")), 100.0, ME, checks, lambda uid: uid in working)  # type: ignore[arg-type]
    await _sweep_at(sweep, clock, 0.0)
    await _sweep_at(sweep, clock, 100.0)
    assert checks.seen == []
    working.clear()
    await _sweep_at(sweep, clock, 200.0)
    assert checks.seen == [("a", 0)]


async def test_an_object_gone_from_the_view_is_forgotten(clock: list[float]) -> None:
    view = View(_body("a"))
    sweep = DriftSweep(view, 100.0, ME, Checks())  # type: ignore[arg-type]
    await _sweep_at(sweep, clock, 0.0)
    assert "a" in sweep._due
    view.objects = []
    await _sweep_at(sweep, clock, 1.0)
    assert sweep._due == {}


def test_a_check_that_failed_is_retried_by_the_sweep_not_left_for_nobody() -> None:
    # Kopf retries only its change handlers: an object the drift check left not at rest must be retried
    # by the sweep itself (the tree re-created under a new load balancer waited for nobody otherwise).
    failed = _body("u-1", ready=False)
    assert not drift.drift_check_due(failed, None)
    assert drift.drift_check_due(failed, None, retrying=True)


async def test_stopping_gives_the_checks_under_way_their_grace_then_cancels_them() -> None:
    ending, stuck = asyncio.Event(), asyncio.Event()
    ended: list[str] = []

    async def check(body: Mapping[str, Any], retries: int) -> None:
        uid = body["metadata"]["uid"]
        await (ending if uid == "quick" else stuck).wait()
        ended.append(uid)

    sweep = DriftSweep(View(), 100.0, ME, check, stop_grace=0.2)  # type: ignore[arg-type]
    for uid in ("quick", "stuck"):
        sweep._start(uid, _body(uid), drift._Due(0.0))
    running = asyncio.create_task(sweep.run())
    await asyncio.sleep(0)
    running.cancel()
    await asyncio.sleep(0)
    ending.set()
    async with asyncio.timeout(5):
        await asyncio.gather(running, return_exceptions=True)
    assert ended == ["quick"], "a check under way was cut short, or one past its grace was not"
    assert sweep._running == {}


async def test_the_first_watch_event_starts_the_sweep_once() -> None:
    # Kopf's poster of Events is reachable only from inside its handling of an object: the sweep starts
    # there, not in the start-up handler (its checks' Events failed with a LookupError from there).
    sweep = DriftSweep(View(), 100.0, ME, Checks())  # type: ignore[arg-type]
    memo = kopf.Memo(drift=sweep)
    await drift.on_event("ADDED", _body("a"), memo)
    first = sweep._task
    await drift.on_event("MODIFIED", _body("a"), memo)
    assert first is not None
    assert sweep._task is first
    await sweep.stop()
    assert first.done()
