"""A held lock: its renewer never stalls the loop, keeps a hold that is still ours, and gives up in time."""

from __future__ import annotations

import asyncio

import pytest
from fake_leases import FakeLeases, MakeMutex, drained, unavailable, until

from lb_operator.mutex import HoldLost, HoldReleased, MutexSettings, lease_name
from lb_operator.mutex.leases import Missing


async def test_a_holder_whose_lease_left_the_cache_does_not_stall_the_event_loop(
    make_mutex: MakeMutex, fake: FakeLeases, fast: MutexSettings
) -> None:
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    async with mutex.hold("lb/stall", deadline=loop.time() + 5) as held:
        await drained(fake, mutex.watch)  # no event left that would bring the record back
        mutex.watch.forget(lease_name("lb/stall"))  # however the record left, the renewer must not spin
        worst = 0.0
        ends = loop.time() + fast.renew_interval * 1.5  # across one renewal
        while loop.time() < ends:
            before = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - before)
        held.check()
    # A renewer spinning on a missing record would block the loop for good (the test would hang or see
    # seconds); a loaded machine may stretch a 10 ms sleep by a few tens of ms.
    assert worst < 0.5, f"a 10 ms sleep took {worst * 1000:.0f} ms: the event loop was blocked"


async def test_a_renewal_conflict_keeps_a_hold_that_is_still_ours(
    make_mutex: MakeMutex, fake: FakeLeases, fast: MutexSettings
) -> None:
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    name = lease_name("lb/touched")

    async def someone_touches_it() -> None:  # e.g. a label added by hand: still our holder
        fake.put(name, {"renewTime": "2026-01-01T00:00:00.000000Z"})

    async with mutex.hold("lb/touched", deadline=loop.time() + 5) as held:
        fake.before["update"].append(someone_touches_it)
        renewals = fake.ledger.requests["update"]
        await until("two more renewals", lambda: fake.ledger.requests["update"] >= renewals + 2, within=5)
        held.check()
    assert fake.ledger.requests["get"] >= 1, "the conflict was never looked into"
    assert fake.objects[name]["spec"]["holderIdentity"] is None  # released normally


async def test_a_renewal_conflict_with_another_holder_loses_the_hold(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    name = lease_name("lb/taken")

    async def intruder_takes_it() -> None:
        fake.put(name, {"holderIdentity": "intruder/1", "leaseTransitions": 99})

    with pytest.raises(HoldLost, match="lease taken by intruder/1"):
        async with mutex.hold("lb/taken", deadline=loop.time() + 5) as held:
            fake.before["update"].append(intruder_takes_it)
            await asyncio.sleep(10)  # cancelled by the lost hold long before this ends
    assert held.lost
    assert fake.objects[name]["spec"]["holderIdentity"] == "intruder/1"  # not cleared by our release


async def test_renewals_failing_until_the_renew_deadline_lose_the_hold_then_and_not_before(
    make_mutex: MakeMutex, fake: FakeLeases, fast: MutexSettings
) -> None:
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    with pytest.raises(HoldLost, match="not renewed"):
        async with mutex.hold("lb/outage", deadline=loop.time() + 5):
            acquired = loop.time()
            fake.fail_next("update", unavailable(), times=10_000)
            await asyncio.sleep(10)
    lost_after = loop.time() - acquired
    # Not before the renew deadline; and before the lease could expire for the others (the property that
    # matters: a holder must know it lost before anyone may take over). A tighter upper bound would be a
    # speed claim: on a loaded 2-core machine it failed at +0.5 s.
    assert fast.renew_deadline <= lost_after < fast.lease_duration, f"lost after {lost_after:.2f}s"


async def test_a_lease_deleted_under_a_holder_loses_the_hold(make_mutex: MakeMutex, fake: FakeLeases) -> None:
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    with pytest.raises(HoldLost, match="deleted"):
        async with mutex.hold("lb/deleted", deadline=loop.time() + 5):
            fake.fail_next("update", Missing("PUT: 404"))
            await asyncio.sleep(10)


async def test_check_after_the_block_raises_instead_of_saying_all_is_well(make_mutex: MakeMutex) -> None:
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    async with mutex.hold("lb/done", deadline=loop.time() + 5) as held:
        held.check()
        assert not held.lost
    with pytest.raises(HoldReleased, match="inside the `async with"):
        held.check()
    assert held.lost


async def test_a_hold_has_no_truth_value(make_mutex: MakeMutex) -> None:
    mutex = make_mutex()
    held = await mutex.try_hold("lb/bool")
    assert held is not None
    async with held:
        with pytest.raises(TypeError, match="no truth value"):
            bool(held)
