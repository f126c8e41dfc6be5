"""The drift checks' shared lists: one read however many checks wait for it, fresh for ``max_age``.

A stand-in backend that counts list calls: how many of one client's requests
were in flight at once cannot be seen from the simulator.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from lb_operator.cloud import Busy
from lb_operator.reconcile.snapshot import CloudSnapshot


@dataclass
class Listed:
    uuid: str


class Pools:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.release = asyncio.Event()

    async def list_pools(self) -> list[Listed]:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise Busy("list pools", "503")
        return [Listed("p1"), Listed("p2")]


def _snapshot(pools: Pools, max_age: float = 60) -> CloudSnapshot:
    return CloudSnapshot(pools, max_age)  # type: ignore[arg-type]  # only list_pools is called


async def test_checks_waiting_at_once_share_one_read_and_later_ones_reuse_it() -> None:
    pools = Pools()
    snapshot = _snapshot(pools)
    looks = [asyncio.ensure_future(snapshot.lookup("LoadBalancerPool", uuid)) for uuid in ("p1", "p2", "p3")]
    await asyncio.sleep(0)
    pools.release.set()
    found = await asyncio.gather(*looks)
    assert [f.uuid if f else None for f in found] == ["p1", "p2", None]
    assert await snapshot.lookup("LoadBalancerPool", "p1") == Listed("p1")
    assert pools.calls == 1


async def test_a_cancelled_check_does_not_cancel_the_read_for_the_others() -> None:
    pools = Pools()
    snapshot = _snapshot(pools)
    first = asyncio.ensure_future(snapshot.lookup("LoadBalancerPool", "p1"))
    second = asyncio.ensure_future(snapshot.lookup("LoadBalancerPool", "p2"))
    await asyncio.sleep(0)
    first.cancel()
    pools.release.set()
    assert await second == Listed("p2")
    assert pools.calls == 1


async def test_a_failed_read_reaches_every_waiter_and_the_next_check_reads_again() -> None:
    pools = Pools()
    pools.fail = True
    pools.release.set()
    snapshot = _snapshot(pools)
    with pytest.raises(Busy):
        await snapshot.lookup("LoadBalancerPool", "p1")
    pools.fail = False
    assert await snapshot.lookup("LoadBalancerPool", "p1") == Listed("p1")
    assert pools.calls == 2


async def test_a_list_older_than_max_age_is_read_again() -> None:
    pools = Pools()
    pools.release.set()
    snapshot = _snapshot(pools, max_age=0)
    await snapshot.lookup("LoadBalancerPool", "p1")
    await snapshot.lookup("LoadBalancerPool", "p1")
    assert pools.calls == 2


async def test_members_need_their_pool_and_unknown_kinds_have_no_list() -> None:
    snapshot = _snapshot(Pools())
    assert await snapshot.lookup("LoadBalancerPoolMember", "m1") is None  # no pool known: read afresh
    assert await snapshot.lookup("Unknown", "x") is None


async def test_only_members_are_listed_per_pool() -> None:
    # Before: a listener's or monitor's pool made a list of its own: every listener list read once per pool.
    pools = Pools()
    pools.release.set()
    snapshot = _snapshot(pools)
    assert await snapshot.lookup("LoadBalancerPool", "p1", "pool-a") == Listed("p1")
    assert await snapshot.lookup("LoadBalancerPool", "p2", "pool-b") == Listed("p2")
    assert pools.calls == 1
