"""A deleted load balancer's or pool's lock Lease is discarded once the cloud object is gone, and only then.

Octavia answers a deletion at once and keeps the object ``PENDING_DELETE``
until its provider is done, so the deletion waits for it to be gone. The
cloud here is a fake that answers a scripted series of reads (the
simulator deletes at once, so it cannot show an object being deleted);
the mutex is a fake that records discards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from lb_operator.cloud import NotFound
from lb_operator.cloud.models import LoadBalancer, Pool
from lb_operator.handlers.deletion import _discard_locks_of_gone_parents
from lb_operator.reconcile.engine import UID_TAG, family_key
from lb_operator.reconcile.resources import Resource

UID = "uid-web"


def _lb(status: str, owner: str | None = UID) -> LoadBalancer:
    tags = {UID_TAG: owner} if owner else {}
    return LoadBalancer.model_validate(
        {
            "uuid": "lb-1",
            "name": "web",
            "flavor": {"slug": "x"},
            "zone": {"slug": "z"},
            "status": status,
            "tags": tags,
        }
    )


def _pool(owner: str) -> Pool:
    return Pool.model_validate(
        {
            "uuid": "pool-1",
            "name": "p",
            "load_balancer": {"uuid": "lb-1"},
            "algorithm": "round_robin",
            "protocol": "tcp",
            "tags": {UID_TAG: owner},
        }
    )


class Cloud:
    """Answers each read with the next of ``answers`` (the last one again once they run out)."""

    def __init__(self, answers: list[Any]) -> None:
        self._answers: Iterator[Any] = iter(answers)
        self._last: Any = None
        self.reads = 0

    async def _next(self, uuid: str) -> Any:
        self.reads += 1
        self._last = next(self._answers, self._last)
        if isinstance(self._last, Exception):
            raise self._last
        return self._last

    get_load_balancer = _next
    get_pool = _next


class Mutex:
    def __init__(self) -> None:
        self.discarded: list[str] = []

    async def discard(self, key: str, deadline: float) -> None:
        self.discarded.append(key)


def _ctx(cloud: Cloud) -> Any:
    settings = SimpleNamespace(ready_poll=0.01, handler_timeout=5.0)
    return SimpleNamespace(cloud=cloud, mutex=Mutex(), settings=settings, families={})


def _deleted(kind: str, uuid: str) -> Resource:
    return Resource(kind, "shop", "web", UID, 1, {}, {"uuid": uuid}, deleting=True)


async def _discard(kind: str, uuid: str, answers: list[Any]) -> tuple[Any, Cloud]:
    cloud = Cloud(answers)
    ctx = _ctx(cloud)
    await asyncio.wait_for(_discard_locks_of_gone_parents(ctx, _deleted(kind, uuid)), 5)
    return ctx, cloud


async def test_a_load_balancer_still_being_deleted_keeps_its_lease_until_it_is_gone() -> None:
    ctx, cloud = await _discard(
        "LoadBalancer", "lb-1", [_lb("changing"), _lb("changing"), NotFound("get", "gone")]
    )
    assert ctx.mutex.discarded == [family_key(UID)]
    assert cloud.reads == 3


async def test_a_load_balancer_whose_tag_was_removed_is_still_ours_and_waited_for() -> None:
    ctx, cloud = await _discard(
        "LoadBalancer", "lb-1", [_lb("changing", owner=None), NotFound("get", "gone")]
    )
    assert ctx.mutex.discarded == [family_key(UID)]
    assert cloud.reads == 2


async def test_a_load_balancer_whose_deletion_failed_in_the_cloud_keeps_its_lease_and_is_not_waited_for() -> (
    None
):
    ctx, cloud = await _discard("LoadBalancer", "lb-1", [_lb("error")])
    assert ctx.mutex.discarded == []
    assert cloud.reads == 1


async def test_another_objects_load_balancer_is_not_waited_for_and_the_family_lease_goes() -> None:
    ctx, cloud = await _discard("LoadBalancer", "lb-1", [_lb("running", owner="uid-original")])
    assert ctx.mutex.discarded == [family_key(UID)]  # the family Lease is keyed on this object's UID
    assert cloud.reads == 1


async def test_another_objects_pool_keeps_its_lease() -> None:
    ctx, cloud = await _discard("LoadBalancerPool", "pool-1", [_pool("uid-original")])
    assert ctx.mutex.discarded == []  # pool/<uuid> is its owner's lock
    assert cloud.reads == 1
