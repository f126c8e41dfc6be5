"""A lease passed between the tasks of one process (``pass_within``): no writes, and never past its hold."""

from __future__ import annotations

import asyncio
import copy

import pytest
from fake_leases import FakeLeases, MakeMutex, until

from lb_operator.mutex import HoldLost, HoldReleased, LockTimeout, MutexSettings, lease_name
from lb_operator.mutex.hold import Hold, Passed


@pytest.fixture
def passing(fast: MutexSettings) -> MutexSettings:
    return fast.model_copy(update={"pass_within": 60.0})


async def test_a_burst_of_queued_sections_costs_one_take_and_one_release(
    make_mutex: MakeMutex, fake: FakeLeases, passing: MutexSettings
) -> None:
    mutex = make_mutex(settings=passing)
    loop = asyncio.get_running_loop()
    holds: list[Hold] = []

    async def section() -> None:
        async with mutex.hold("lb/burst", deadline=loop.time() + 10) as held:
            held.check()
            if holds:
                with pytest.raises(HoldReleased):  # the one before is over: it guards nothing now
                    holds[-1].check()
            holds.append(held)

    tasks = []
    for _ in range(20):
        tasks.append(asyncio.create_task(section()))
        await asyncio.sleep(0)  # each task reaches the queue before the next is made
    await asyncio.gather(*tasks)
    assert [held.passes for held in holds] == list(range(20))
    assert len({held.fencing_token for held in holds}) == 1  # nothing was written between them
    # Without passing: one create, then 19 takes and 20 releases (39 updates, see test_mutex.py).
    assert fake.ledger.requests["create"] == 1
    assert fake.ledger.requests["update"] == 1  # the last one's release
    assert fake.objects[lease_name("lb/burst")]["spec"]["holderIdentity"] is None


async def test_the_lease_is_renewed_across_passes_and_never_lost(
    make_mutex: MakeMutex, fake: FakeLeases, passing: MutexSettings
) -> None:
    mutex = make_mutex(settings=passing)
    loop = asyncio.get_running_loop()
    name = lease_name("lb/long")
    renewed_at: list[str] = []
    passes: list[int] = []

    async def section() -> None:
        async with mutex.hold("lb/long", deadline=loop.time() + 10) as held:
            await asyncio.sleep(passing.renew_interval * 0.6)
            held.check()
            renewed_at.append(fake.objects[name]["spec"]["renewTime"])
            passes.append(held.passes)

    tasks = []
    for _ in range(4):  # 2.4 renew intervals in all, beyond the renew deadline of one hold
        tasks.append(asyncio.create_task(section()))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert passes == [0, 1, 2, 3]  # one lease, passed on: only the renewers wrote to it
    assert len(set(renewed_at)) >= 2, f"never renewed while passed on: {renewed_at}"
    assert fake.objects[name]["spec"]["holderIdentity"] is None


async def test_past_pass_within_the_lease_is_released_for_the_others(
    make_mutex: MakeMutex, fake: FakeLeases, fast: MutexSettings
) -> None:
    mutex = make_mutex(settings=fast.model_copy(update={"pass_within": 0.2}))
    loop = asyncio.get_running_loop()
    name = lease_name("lb/fair")
    released: list[bool] = []

    async def second() -> Hold:
        async with mutex.hold("lb/fair", deadline=loop.time() + 10) as held:
            return held

    async with mutex.hold("lb/fair", deadline=loop.time() + 10):
        following = asyncio.create_task(second())
        await asyncio.sleep(0.3)  # past pass_within, with a task of ours queued

        async def watch_release() -> None:
            released.append(fake.objects[name]["spec"]["holderIdentity"] is None)

        fake.after["update"].append(watch_release)
    held = await following
    assert held.passes == 0, "passed on past pass_within: other processes could wait forever"
    assert released[0], "the first hold's lease was not given back before the second took it"


async def test_a_lost_hold_is_not_passed_on(
    make_mutex: MakeMutex, fake: FakeLeases, passing: MutexSettings
) -> None:
    mutex = make_mutex(settings=passing)
    loop = asyncio.get_running_loop()
    name = lease_name("lb/lost")
    entered = asyncio.Event()

    async def following() -> None:
        async with mutex.hold("lb/lost", deadline=loop.time() + 0.5):
            pytest.fail("got a lease another process holds")

    async def first() -> None:
        async with mutex.hold("lb/lost", deadline=loop.time() + 10) as held:
            entered.set()
            await asyncio.sleep(10)  # cancelled when the hold is lost
            held.check()

    holder = asyncio.create_task(first())
    await entered.wait()
    queued = asyncio.create_task(following())
    await asyncio.sleep(0)
    fake.put(name, {"holderIdentity": "another-process", "leaseTransitions": 7})  # took it (expired, say)
    async with asyncio.timeout(5):
        with pytest.raises(HoldLost):
            await holder
        with pytest.raises(LockTimeout):  # it waited for the other process, as it must
            await queued


async def test_a_lease_passed_to_a_task_that_gave_up_is_released(
    make_mutex: MakeMutex, fake: FakeLeases, passing: MutexSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutex = make_mutex(settings=passing)
    loop = asyncio.get_running_loop()
    name = lease_name("lb/gave-up")

    async def following() -> None:
        async with mutex.hold("lb/gave-up", deadline=loop.time() + 10):
            pytest.fail("the cancelled task ran")

    queued: asyncio.Task[None] | None = None
    pass_on = mutex.pass_on

    def pass_on_then_give_up(hold: Hold) -> bool:
        # The task the lease is passed to is cancelled (Kopf stops it, its deadline fires) after the
        # pass and before it runs: a moment no test can hit from outside, so it is made here.
        passed = pass_on(hold)
        assert passed
        assert queued is not None
        queued.cancel()
        return passed

    monkeypatch.setattr(mutex, "pass_on", pass_on_then_give_up)
    async with mutex.hold("lb/gave-up", deadline=loop.time() + 10):
        queued = asyncio.create_task(following())
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await queued
    await until("the passed lease released", lambda: fake.objects[name]["spec"]["holderIdentity"] is None, 2)
    assert not mutex.is_busy("lb/gave-up")


async def test_without_pass_within_every_hold_is_released(
    make_mutex: MakeMutex, fake: FakeLeases, fast: MutexSettings
) -> None:
    assert fast.pass_within == 0  # the default
    mutex = make_mutex(settings=fast)
    loop = asyncio.get_running_loop()

    async def section() -> int:
        async with mutex.hold("lb/plain", deadline=loop.time() + 10) as held:
            return held.passes

    tasks = [asyncio.create_task(section()) for _ in range(3)]
    assert await asyncio.gather(*tasks) == [0, 0, 0]
    assert fake.ledger.requests["update"] == 2 * 3 - 1


async def test_a_hold_whose_renewal_is_overdue_is_not_passed_on(
    make_mutex: MakeMutex, fake: FakeLeases, passing: MutexSettings
) -> None:
    mutex = make_mutex(settings=passing)
    loop = asyncio.get_running_loop()
    renewing = asyncio.Event()

    async def following() -> int:
        async with mutex.hold("lb/overdue", deadline=loop.time() + 10) as held:
            return held.passes

    async def renewal_hangs() -> None:
        renewing.set()
        await asyncio.sleep(passing.renew_interval)

    async with mutex.hold("lb/overdue", deadline=loop.time() + 10):
        fake.before["update"].append(renewal_hangs)  # the renewal due after renew_interval does not come back
        queued = asyncio.create_task(following())
        await renewing.wait()
        await asyncio.sleep(passing.renew_interval * 0.2)  # overdue now, and before the renew deadline
    assert await queued == 0, "an overdue hold was passed on: its successor might not renew in time"


async def test_a_lease_passed_too_late_is_given_back_not_used(
    make_mutex: MakeMutex, fake: FakeLeases, passing: MutexSettings
) -> None:
    mutex = make_mutex(settings=passing)
    loop = asyncio.get_running_loop()
    name = lease_name("lb/late")
    async with mutex.hold("lb/late", deadline=loop.time() + 10) as held:
        obj = copy.deepcopy(fake.objects[name])
    # A pass whose last renewal lies a renew deadline back (its giver's task kept the loop that long):
    late = Passed(obj, loop.time() - passing.renew_deadline, loop.time() - passing.renew_deadline, 1)
    assert mutex._hold_passed("lb/late", late, loop.time()) is None
    assert held.passes == 0


@pytest.fixture
def lingering(passing: MutexSettings) -> MutexSettings:
    return passing.model_copy(update={"linger": 0.3})


async def test_a_lease_lingers_for_a_task_that_comes_soon_after_and_costs_it_no_write(
    make_mutex: MakeMutex, fake: FakeLeases, lingering: MutexSettings
) -> None:
    # Before: a child of a tree that came a moment after its sibling's change (not yet queued when the
    # sibling released) cost a release and a take: 2 Lease writes per change on a tree built piecemeal.
    mutex = make_mutex(settings=lingering)
    loop = asyncio.get_running_loop()
    name = lease_name("lb/piecemeal")
    async with mutex.hold("lb/piecemeal", deadline=loop.time() + 10) as first:
        pass
    assert fake.objects[name]["spec"]["holderIdentity"] is not None, "released at once"
    assert mutex.is_busy("lb/piecemeal")  # the sweeper and discard() leave it alone meanwhile
    writes = fake.ledger.requests["update"]
    async with mutex.hold("lb/piecemeal", deadline=loop.time() + 10) as second:
        second.check()
    assert second.passes == first.passes + 1
    assert second.fencing_token == first.fencing_token
    assert fake.ledger.requests["update"] == writes
    await until(
        "the lease released once nobody came", lambda: fake.objects[name]["spec"]["holderIdentity"] is None, 2
    )
    assert not mutex.is_busy("lb/piecemeal")
    assert fake.ledger.requests["update"] == writes + 1


async def test_a_lingering_lease_is_released_on_close_and_never_past_its_renewal(
    make_mutex: MakeMutex, fake: FakeLeases, lingering: MutexSettings
) -> None:
    mutex = make_mutex(settings=lingering.model_copy(update={"linger": 600.0}))
    loop = asyncio.get_running_loop()
    name = lease_name("lb/closing")
    async with mutex.hold("lb/closing", deadline=loop.time() + 10):
        pass
    assert fake.objects[name]["spec"]["holderIdentity"] is not None
    # Never past the renewal due (nothing renews a lease nobody holds): released within renew_interval.
    await until(
        "released by the renewal due",
        lambda: fake.objects[name]["spec"]["holderIdentity"] is None,
        lingering.renew_interval * 3,
    )
    async with mutex.hold("lb/closing", deadline=loop.time() + 10):
        pass
    await mutex.close()
    assert fake.objects[name]["spec"]["holderIdentity"] is None


async def test_a_section_that_failed_gives_the_lease_back_at_once(
    make_mutex: MakeMutex, fake: FakeLeases, lingering: MutexSettings
) -> None:
    mutex = make_mutex(settings=lingering.model_copy(update={"linger": 600.0}))
    loop = asyncio.get_running_loop()
    with pytest.raises(RuntimeError):
        async with mutex.hold("lb/failed", deadline=loop.time() + 10):
            raise RuntimeError("the cloud change failed")
    assert fake.objects[lease_name("lb/failed")]["spec"]["holderIdentity"] is None
    assert not mutex.is_busy("lb/failed")
