"""A sharder moves objects off a member only on fresh evidence that the member is gone.

The Lease API is the in-memory fake (a stalled watch, a renewal the cache
missed: cases the real API server cannot be made to show on cue); the
sharder's view of the objects is given to it directly, and the objects API
is a stand-in that records label writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fake_leases import FakeLeases, MakeMutex, until

from lb_operator.mutex import LeaseMutex, lease_name
from lb_operator.sharding import SHARD_LABEL
from lb_operator.sharding.members import MEMBER_PREFIX, live_members
from lb_operator.sharding.sharder import PASS_WRITES, Sharder
from lb_operator.sharding.streams import Mirror


class Objects:
    """LoadBalancers labelled for members; label writes are recorded, not applied."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners
        self.written: list[tuple[str, dict[str, Any]]] = []

    def bodies(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": "LoadBalancer",
                "metadata": {
                    "namespace": "shop",
                    "name": name,
                    "uid": f"uid-{name}",
                    "resourceVersion": "1",
                    "labels": {SHARD_LABEL: owner},
                },
                "spec": {},
            }
            for name, owner in self.owners.items()
        ]

    async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
        self.written.append((args[4], args[5]["metadata"]["labels"]))


def _sharder(mutex: LeaseMutex, objects: Objects) -> Sharder:
    """A sharder whose followers have listed ``objects`` (its view is complete)."""
    mirror = Mirror(None, ["shop"])  # follows nothing: the test gives it what it would have listed
    for following in mirror.following:
        following.synced.set()
    for body in objects.bodies():
        mirror._deliver("LoadBalancer", "ADDED", body)
    sharder = Sharder(object(), mutex, mirror)  # type: ignore[arg-type]  # the objects API is replaced
    sharder._objects = objects  # type: ignore[assignment]
    return sharder


def _member(fake: FakeLeases, member: str, duration: int = 1) -> dict[str, Any]:
    spec = {"holderIdentity": f"{member}/1", "leaseDurationSeconds": duration}
    return fake.put(lease_name(MEMBER_PREFIX + member), spec, key=MEMBER_PREFIX + member)


async def test_no_object_moves_while_the_lease_cache_is_not_proven_fresh(make_mutex: MakeMutex) -> None:
    mutex = make_mutex("me")
    await mutex.watch.stop()  # no watch at all: nothing in the cache is known to be current
    objects = Objects({"lb0": "a", "lb1": "b"})  # labelled for members the cache does not know

    sharder = _sharder(mutex, objects)
    await sharder._pass(lambda: None)

    assert objects.written == []
    assert sharder.passes == 0, "a pass ran on a cache that proves nothing"


async def test_a_member_the_cache_shows_expired_but_that_renewed_keeps_its_objects(
    fake: FakeLeases, make_mutex: MakeMutex
) -> None:
    mutex = make_mutex("me")
    async with mutex.hold(MEMBER_PREFIX + "me", deadline=asyncio.get_running_loop().time() + 60):
        _member(fake, "a")
        await until("the cache to see a", lambda: "a" in live_members(mutex.watch))
        fake.stall_open_watches()  # a's renewals no longer reach the cache...
        _member(fake, "a")  # ...but a renews
        await until("a to look expired in the cache", lambda: "a" not in live_members(mutex.watch), within=3)
        settings = mutex.settings
        assert mutex.watch.fresh_within(2 * settings.renew_interval + settings.watch_stall_timeout)
        sharder = _sharder(mutex, Objects({"lb0": "a", "lb1": "me"}))

        await sharder._pass(lambda: None)

        written = sharder._objects.written  # type: ignore[attr-defined]
        # At most a drain (a asks to let go once its handlers are done), never a move behind its back.
        assert all(SHARD_LABEL not in labels for _, labels in written), written
        assert sharder.confirmed_alive == 1


async def test_a_member_that_really_stopped_renewing_loses_its_objects(
    fake: FakeLeases, make_mutex: MakeMutex
) -> None:
    mutex = make_mutex("me")
    async with mutex.hold(MEMBER_PREFIX + "me", deadline=asyncio.get_running_loop().time() + 60):
        _member(fake, "a")
        await until("a to expire", lambda: "a" not in live_members(mutex.watch) and mutex.watch.synced, 3)
        objects = Objects({"lb0": "a"})

        await _sharder(mutex, objects)._pass(lambda: None)

        assert objects.written == [("lb0", {SHARD_LABEL: "me", "lboperator.dev/drain": None})]


async def test_a_burst_is_labelled_in_short_passes_and_the_next_pass_comes_at_once(
    fake: FakeLeases, make_mutex: MakeMutex
) -> None:
    # Before: one pass wrote every label of a burst (431 writes took 13 s on a loaded API server), and a
    # load balancer created meanwhile waited for all of them, unlabelled.
    mutex = make_mutex("me")
    _member(fake, "a", duration=60)
    await until("the cache to see a", lambda: "a" in live_members(mutex.watch))
    objects = Objects({f"lb{i}": "" for i in range(PASS_WRITES + 3)})  # nobody's yet
    sharder = _sharder(mutex, objects)

    await sharder._pass(lambda: None)
    assert len(objects.written) == PASS_WRITES
    assert sharder._dirty.is_set(), "the rest must not wait for news"
