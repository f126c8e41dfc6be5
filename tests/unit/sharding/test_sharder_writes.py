"""How a sharder pass writes its moves: several at once, and none after it lost its lock.

The objects API is a stand-in that counts writes in flight: the real API
server cannot show how many of one client's requests overlapped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lb_operator.mutex import HoldLost
from lb_operator.sharding import FINALIZER, SHARD_LABEL
from lb_operator.sharding.sharder import WRITE_CONCURRENCY, Move, Sharder
from lb_operator.sharding.streams import Mirror


class CountingObjects:
    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.written: list[str] = []
        self.bodies: list[Any] = []

    async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
        self.bodies.append(args[5])
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            for _ in range(3):  # a request in flight: other writes get their turn meanwhile
                await asyncio.sleep(0)
            self.written.append(args[4])
        finally:
            self.in_flight -= 1


def _sharder() -> tuple[Sharder, CountingObjects]:
    sharder = Sharder(object(), None, Mirror(None, []))  # type: ignore[arg-type]  # no API client, no mutex used
    objects = CountingObjects()
    sharder._objects = objects  # type: ignore[assignment]
    return sharder, objects


def _moves(n: int) -> list[Move]:
    return [Move("loadbalancers", "shop", f"lb{i}", "1", {"lboperator.dev/shard": "b"}) for i in range(n)]


async def test_a_pass_writes_its_moves_several_at_a_time_but_no_more_than_the_limit() -> None:
    sharder, objects = _sharder()
    await sharder._write_all(_moves(3 * WRITE_CONCURRENCY), lambda: None)
    assert sorted(objects.written) == sorted(f"lb{i}" for i in range(3 * WRITE_CONCURRENCY))
    assert objects.most == WRITE_CONCURRENCY
    assert sharder.writes == 3 * WRITE_CONCURRENCY


async def test_a_sharder_that_lost_its_lock_writes_nothing_more() -> None:
    sharder, objects = _sharder()

    def check() -> None:
        if objects.written:  # lost as the first write completes
            raise HoldLost("sharder", "another process took it")

    with pytest.raises(HoldLost):
        await sharder._write_all(_moves(5 * WRITE_CONCURRENCY), check)
    assert len(objects.written) <= WRITE_CONCURRENCY, "it went on writing after the lock was lost"


async def test_a_first_assignment_sends_kopfs_finalizer_in_the_same_write() -> None:
    sharder, objects = _sharder()
    finalizers = ["someone.else/finalizer", FINALIZER]
    first = Move("loadbalancers", "shop", "lb0", "1", {SHARD_LABEL: "b"}, finalizers=finalizers)
    await sharder._write_all([first, *_moves(1)], lambda: None)
    assert objects.bodies[0]["metadata"] == {
        "resourceVersion": "1",
        "labels": {SHARD_LABEL: "b"},
        "finalizers": finalizers,
    }
    assert "finalizers" not in objects.bodies[1]["metadata"]  # no finalizer change: none sent
