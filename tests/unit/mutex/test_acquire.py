"""Taking a lock: deadlines, take-over by our clock, writes whose answer was lost, and flat memory."""

from __future__ import annotations

import asyncio

import pytest
from fake_leases import FakeLeases, MakeMutex, drained, unavailable, until

from lb_operator.mutex import Hold, LockTimeout, MutexSettings, Waiting, lease_name
from lb_operator.mutex.contender import Attempt


def _holder(fake: FakeLeases, key: str) -> str | None:
    holder: str | None = fake.objects[lease_name(key)]["spec"].get("holderIdentity")
    return holder


async def test_a_waiter_gives_up_at_its_deadline_naming_the_holder(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    fake.put(lease_name("lb/busy"), {"holderIdentity": "other/1", "leaseDurationSeconds": 30}, key="lb/busy")
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LockTimeout) as timeout:
        async with mutex.hold("lb/busy", deadline=started + 0.3):
            pytest.fail("entered a section another replica holds")
    # Not before its deadline; within an order of magnitude of it (the holder's lease lasts 30 s).
    assert 0.29 <= loop.time() - started < 3.0
    assert timeout.value.holder == "other/1"
    assert not mutex.is_busy("lb/busy")


async def test_try_hold_returns_none_while_another_replica_holds(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    fake.put(lease_name("lb/try"), {"holderIdentity": "other/1", "leaseDurationSeconds": 30}, key="lb/try")
    mutex = make_mutex()
    assert await mutex.try_hold("lb/try") is None
    assert _holder(fake, "lb/try") == "other/1"


async def test_a_lease_left_by_a_dead_holder_is_taken_after_its_duration_by_our_clock(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    # Its renewTime is far in the future: only our own clock may decide when it expired.
    spec = {"holderIdentity": "dead/1", "leaseDurationSeconds": 1, "leaseTransitions": 4}
    fake.put(lease_name("lb/dead"), {**spec, "renewTime": "2099-01-01T00:00:00.000000Z"}, key="lb/dead")
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with mutex.hold("lb/dead", deadline=started + 5) as held:
        took = loop.time() - started
        assert held.transitions == 5
    # Not before the lease ran out by our clock (the behaviour); and not long after it.
    assert 0.98 <= took < 3.0, f"took over after {took:.2f}s for a 1 s lease"


async def test_a_write_whose_answer_was_lost_is_adopted_if_it_landed(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    mutex = make_mutex()

    async def answer_lost() -> None:
        raise unavailable("connection reset after the request was sent")

    fake.after["create"].append(answer_lost)
    loop = asyncio.get_running_loop()
    async with mutex.hold("lb/lost-answer", deadline=loop.time() + 5) as held:
        held.check()
        assert held.transitions == 1  # the landed write, not a second acquisition over it
        assert _holder(fake, "lb/lost-answer") == mutex.identity
    assert (fake.ledger.requests["create"], fake.ledger.requests["update"]) == (1, 1)  # 1 update: the release


async def test_the_cleanup_of_a_cancelled_acquire_never_clears_the_next_local_holder(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    """Cancel an acquire whose write landed but is unanswered — twice — while the next task waits."""
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    key, name = "lb/doubt", lease_name("lb/doubt")
    answer = asyncio.Event()  # never set: the create's answer never comes
    cleanup_may_read = asyncio.Event()

    async def hang() -> None:
        await answer.wait()

    async def slow_read() -> None:
        await cleanup_may_read.wait()

    fake.after["create"].append(hang)
    first = asyncio.create_task(mutex.hold(key, deadline=loop.time() + 10).__aenter__())
    await until("the first write to land", lambda: name in fake.objects)
    fake.before["get"].append(slow_read)
    first.cancel()
    await asyncio.sleep(0)
    first.cancel()  # a second cancellation must not free the local queue early
    with pytest.raises(asyncio.CancelledError):
        await first

    told: list[Waiting] = []

    async def on_wait(waiting: Waiting) -> None:
        told.append(waiting)

    second_held: list[Hold] = []
    release_second = asyncio.Event()

    async def second() -> None:
        async with mutex.hold(key, deadline=loop.time() + 10, on_wait=on_wait) as held:
            second_held.append(held)
            await release_second.wait()
            held.check()

    task = asyncio.create_task(second())
    try:
        await until("the second task to queue", lambda: bool(told) or bool(second_held))
        got_in_early = bool(second_held)
        cleanup_may_read.set()
        await until("the second task to hold", lambda: bool(second_held))
        await drained(fake, mutex.watch)
        spec = fake.objects[name]["spec"]
        held = second_held[0]
        assert (spec["holderIdentity"], spec["leaseTransitions"]) == (mutex.identity, held.transitions), (
            "the cleanup cleared the next holder's lease"
        )
        held.check()
        assert not got_in_early, "the next task got in while the cleanup could still clear a lease"
        assert [w.local for w in told] == [True], "queued behind a task of this process: told once, as local"
        release_second.set()
        await asyncio.wait_for(task, 5)
    finally:
        cleanup_may_read.set()  # never leave a gate shut: the fixture's close waits for the cleanup
        answer.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_an_attempt_recognises_only_its_own_write() -> None:
    attempt = Attempt("pod/ab12", 3, "2026-11-23T10:00:00.000001Z", 0.0)
    ours = {"holderIdentity": "pod/ab12", "leaseTransitions": 3, "acquireTime": "2026-11-23T10:00:00.000001Z"}
    assert attempt.landed_in({"spec": ours})
    assert not attempt.landed_in({"spec": {**ours, "leaseTransitions": 4}})  # a later local holder
    assert not attempt.landed_in({"spec": {**ours, "acquireTime": "2026-11-23T10:00:00.000002Z"}})
    assert not attempt.landed_in({"spec": {**ours, "holderIdentity": "pod/cd34"}})


async def test_memory_stays_flat_over_ten_thousand_keys(make_mutex: MakeMutex, fake: FakeLeases) -> None:
    mutex = make_mutex(settings=MutexSettings(lease_duration=15, request_timeout=5))
    for number in range(10_000):
        held = await mutex.try_hold(f"lb/{number}")
        assert held is not None
        await held.release()
        assert await mutex.discard(f"lb/{number}")
    await drained(fake, mutex.watch)
    await until(
        "the watch to apply every delete",
        lambda: mutex.watch.names() == [name for name in mutex.watch.names() if name.startswith("marker-")],
        within=30,
    )
    assert mutex._queues == {}
    assert mutex._idle == {}
    assert mutex.watch._waiters == {}
    assert mutex._hooks == set()
    assert mutex._cleanups == set()
    assert fake.ledger.leases_in_flight() == 0
    assert len(fake.objects) == 1  # the marker


async def test_discard_waits_for_a_local_holder_then_removes_the_lease(
    make_mutex: MakeMutex, fake: FakeLeases
) -> None:
    """A child's deletion may still hold its load balancer's lock when the parent discards it."""
    mutex = make_mutex()
    loop = asyncio.get_running_loop()
    held = await mutex.try_hold("lb/parent")
    assert held is not None
    discarding = asyncio.create_task(mutex.discard("lb/parent", loop.time() + 5))
    await asyncio.sleep(0)  # let it start: it must wait, not give up
    assert not discarding.done()
    await held.release()
    assert await asyncio.wait_for(discarding, 5)
    assert lease_name("lb/parent") not in fake.objects
