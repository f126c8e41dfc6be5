"""The parent watch's bookkeeping: who is woken by which change, and nothing kept once nobody waits.

The watch stream itself is the real API server's (integration tests); here
its events are fed in by hand.
"""

from __future__ import annotations

import asyncio

import pytest

from lb_operator.reconcile.parents import ParentWatch, until_set
from lb_operator.sharding.streams import Mirror

WEB = ("LoadBalancer", "shop", "web")


@pytest.fixture
def watch() -> ParentWatch:
    return ParentWatch(Mirror(None, []))  # the mirror follows nothing: events come from the test


def _event(watch: ParentWatch, kind: str, namespace: str, name: str) -> None:
    watch._on_event(kind, "MODIFIED", {"metadata": {"namespace": namespace, "name": name}})


def _soon() -> float:
    return asyncio.get_running_loop().time() + 0.05


async def test_a_change_of_the_parent_wakes_its_waiters_and_only_them(watch: ParentWatch) -> None:
    with watch.expecting(WEB) as web, watch.expecting(("LoadBalancer", "shop", "db")) as db:
        assert web is not None
        assert db is not None
        _event(watch, "LoadBalancer", "shop", "web")
        assert await until_set(web, _soon())
        assert not await until_set(db, _soon())
    assert (watch._waiting, watch._users) == ({}, {})


async def test_the_same_name_of_another_kind_or_namespace_wakes_nobody(watch: ParentWatch) -> None:
    with watch.expecting(WEB) as web:
        assert web is not None
        _event(watch, "LoadBalancerPool", "shop", "web")
        _event(watch, "LoadBalancer", "other", "web")
        assert not await until_set(web, _soon())
    assert (watch._waiting, watch._users) == ({}, {})


async def test_a_broken_stream_wakes_everyone_to_look_again(watch: ParentWatch) -> None:
    with watch.expecting(WEB) as web:
        assert web is not None
        watch.wake_all()
        assert await until_set(web, _soon())


async def test_without_an_api_nothing_waits() -> None:
    with ParentWatch(None).expecting(WEB) as changed:
        assert changed is None
