"""Members: a replica is a member while it holds its member Lease, by every observer's own clock."""

from __future__ import annotations

import asyncio

from fake_leases import FakeLeases, MakeMutex, until

from lb_operator.mutex import lease_name
from lb_operator.sharding.members import Membership, live_members


async def test_replicas_that_hold_their_member_lease_are_members_and_one_that_stops_is_not(
    make_mutex: MakeMutex,
) -> None:
    a, b = make_mutex("a"), make_mutex("b")
    joined = [Membership(a, "replica-a"), Membership(b, "replica-b")]
    for membership in joined:
        membership.start()
    await until("both to be members", lambda: set(live_members(a.watch)) == {"replica-a", "replica-b"})
    await joined[1].stop()
    await until("b to leave", lambda: set(live_members(a.watch)) == {"replica-a"}, within=1)
    await joined[0].stop()


async def test_a_member_that_stops_renewing_drops_out_after_its_lease_by_our_clock(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    observer = make_mutex("observer")
    spec = {"holderIdentity": "frozen/1", "leaseDurationSeconds": 1, "leaseTransitions": 1}
    fake.put(
        lease_name("member/frozen"), {**spec, "renewTime": "2099-01-01T00:00:00.000000Z"}, key="member/frozen"
    )
    await until("the frozen replica to be seen", lambda: "frozen" in live_members(observer.watch))
    loop = asyncio.get_running_loop()
    seen = loop.time()
    await until("it to drop out", lambda: "frozen" not in live_members(observer.watch), within=3)
    assert loop.time() - seen >= 0.9
