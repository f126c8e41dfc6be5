"""The Lease mutex within one process, against the real API server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from kubernetes.aio import client

from lb_operator.mutex import HoldLost, LeaseMutex, LockTimeout, MutexSettings, Waiting, lease_name
from lb_operator.testing import Cluster

MakeMutex = Callable[..., Awaitable[LeaseMutex]]


async def _lease(api: client.ApiClient, namespace: str, key: str) -> client.V1Lease:
    return await client.CoordinationV1Api(api).read_namespaced_lease(lease_name(key), namespace)


async def test_waiter_gives_up_at_its_deadline_and_holds_nothing(
    make_mutex: MakeMutex, api: client.ApiClient, namespace: str
) -> None:
    a, b = await make_mutex("a"), await make_mutex("b")
    loop = asyncio.get_running_loop()
    async with a.hold("lb/deadline", deadline=loop.time() + 10):
        started = loop.time()
        with pytest.raises(LockTimeout) as timeout:
            async with b.hold("lb/deadline", deadline=started + 1.0):
                pytest.fail("b entered a section a holds")
        waited = loop.time() - started
        # Not before its deadline; and within an order of magnitude of it (the holder keeps it for 10 s).
        assert 0.98 <= waited < 3.0, f"gave up after {waited:.2f}s"
        assert timeout.value.key == "lb/deadline"
        assert timeout.value.holder == a.identity
        assert (await _lease(api, namespace, "lb/deadline")).spec.holder_identity == a.identity


async def _told(told: list[Waiting], within: float = 10) -> None:
    """Wait until an ``on_wait`` hook was called: the waiter saw the lock busy and now waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not told:
        assert loop.time() < deadline, "the waiter never reported waiting"
        await asyncio.sleep(0.005)


async def test_cancelling_a_waiter_returns_at_once(make_mutex: MakeMutex) -> None:
    a, b = await make_mutex("a"), await make_mutex("b")
    loop = asyncio.get_running_loop()
    async with a.hold("lb/cancel", deadline=loop.time() + 10):
        entered = asyncio.Event()
        told: list[Waiting] = []

        async def on_wait(waiting: Waiting) -> None:
            told.append(waiting)

        async def wait_forever() -> None:
            async with b.hold("lb/cancel", deadline=loop.time() + 60, on_wait=on_wait):
                entered.set()

        waiter = asyncio.create_task(wait_forever())
        await _told(told)  # it waits now: what we test is the cancel below
        started = loop.time()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert loop.time() - started < 2.0  # at once: the lock is held for 10 s, the waiter's deadline 60 s
        assert not entered.is_set()
        assert not b.is_busy("lb/cancel")


async def test_release_wakes_a_waiter_of_another_replica(
    make_mutex: MakeMutex, api: client.ApiClient, namespace: str
) -> None:
    a, b = await make_mutex("a"), await make_mutex("b")
    loop = asyncio.get_running_loop()
    order: list[str] = []
    first = await a.try_hold("lb/handover")
    assert first is not None
    told: list[Waiting] = []

    async def on_wait(waiting: Waiting) -> None:
        told.append(waiting)

    async def second() -> int:
        async with b.hold("lb/handover", deadline=loop.time() + 10, on_wait=on_wait) as held:
            order.append("b")
            return held.fencing_token

    waiter = asyncio.create_task(second())
    await _told(told)
    order.append("a releases")
    await first.release()
    token = await asyncio.wait_for(waiter, 5)
    assert order == ["a releases", "b"]
    assert token > first.fencing_token
    assert (await _lease(api, namespace, "lb/handover")).spec.holder_identity is None


async def test_try_hold_does_not_wait_for_a_busy_lock(make_mutex: MakeMutex) -> None:
    a, b = await make_mutex("a"), await make_mutex("b")
    held = await a.try_hold("lb/try")
    assert held is not None
    async with held:
        assert await b.try_hold("lb/try") is None
        assert await a.try_hold("lb/try") is None  # busy locally too
    again = await b.try_hold("lb/try")
    assert again is not None
    await again.release()


async def test_local_waiters_are_served_in_order_with_one_request_in_flight(make_mutex: MakeMutex) -> None:
    mutex = await make_mutex("solo")
    loop = asyncio.get_running_loop()
    served: list[int] = []

    async def section(number: int) -> None:
        async with mutex.hold("lb/queue", deadline=loop.time() + 60) as held:
            held.check()
            served.append(number)

    tasks = []
    for number in range(50):
        tasks.append(asyncio.create_task(section(number)))
        await asyncio.sleep(0)  # each task reaches the queue before the next is made
    await asyncio.gather(*tasks)
    assert served == list(range(50))
    assert mutex.api.ledger.max_in_flight == 1  # one key here: the local queue kept it to one request
    # One write to take each section's hold and one to give it back (the first take creates the Lease);
    # the sections are far shorter than a renewal interval, so there is no renewal among them.
    assert mutex.api.ledger.requests["create"] == 1
    assert mutex.api.ledger.requests["update"] == 2 * 50 - 1


async def test_on_wait_is_told_once_per_wait_who_holds(make_mutex: MakeMutex) -> None:
    a, b = await make_mutex("a"), await make_mutex("b")
    loop = asyncio.get_running_loop()
    told: list[Waiting] = []

    async def on_wait(waiting: Waiting) -> None:
        told.append(waiting)

    held = await a.try_hold("lb/events")
    assert held is not None
    waiter = asyncio.create_task(b.hold("lb/events", deadline=loop.time() + 10, on_wait=on_wait).__aenter__())
    await _told(told)
    await held.release()
    second = await asyncio.wait_for(waiter, 5)
    await second.release()
    assert [(w.key, w.holder) for w in told] == [("lb/events", a.identity)]


async def test_hold_is_lost_when_another_writer_takes_the_lease(
    make_mutex: MakeMutex, api: client.ApiClient, namespace: str, fast: MutexSettings
) -> None:
    mutex = await make_mutex("a", fast)
    loop = asyncio.get_running_loop()
    leases = client.CoordinationV1Api(api)
    with pytest.raises(HoldLost, match="lease taken by intruder"):
        async with mutex.hold("lb/stolen", deadline=loop.time() + 5) as held:
            lease = await leases.read_namespaced_lease(lease_name("lb/stolen"), namespace)
            lease.spec.holder_identity = "intruder"
            await leases.replace_namespaced_lease(lease.metadata.name, namespace, lease)
            await asyncio.sleep(10)  # cancelled by the lost hold long before this ends
    assert held.lost
    with pytest.raises(HoldLost):
        held.check()
    assert (await _lease(api, namespace, "lb/stolen")).spec.holder_identity == "intruder"


async def test_hold_is_lost_within_the_renew_deadline_when_the_api_server_stops(
    cluster: Cluster, make_mutex: MakeMutex, fast: MutexSettings
) -> None:
    if cluster.control_plane is None:
        pytest.skip("needs the suite's own control plane to stop it")
    plane = cluster.control_plane
    mutex = await make_mutex("a", fast)
    loop = asyncio.get_running_loop()
    stopping = loop.time()
    stopper: asyncio.Future[None] | None = None
    try:
        with pytest.raises(HoldLost, match="not renewed"):
            async with mutex.hold("lb/outage", deadline=loop.time() + 5):
                stopping = loop.time()
                # In its own task: the guarded task is the one the lost hold cancels.
                stopper = asyncio.ensure_future(asyncio.to_thread(plane.stop_apiserver))
                await asyncio.sleep(30)
        lost_after = loop.time() - stopping
        # By the renew deadline (the behaviour), with room for a loaded machine; others take over only after
        # the whole lease, which this must come before.
        assert lost_after < fast.lease_duration, f"hold lost only after {lost_after:.2f}s"
        assert stopper is not None
        await stopper

        other = await make_mutex("b", fast)
        started = loop.time()
        with pytest.raises(LockTimeout, match=r"last error: .*(Connect|connect|refused)"):
            async with other.hold("lb/outage-2", deadline=started + 1.5):
                pytest.fail("acquired against a stopped API server")
        assert loop.time() - started < 5.0  # its 1.5 s deadline, not a request left to time out by itself
    finally:
        if stopper is not None:
            await asyncio.gather(stopper, return_exceptions=True)
        await asyncio.to_thread(plane.start_apiserver)


async def test_sweeper_deletes_idle_leases_only(
    make_mutex: MakeMutex, api: client.ApiClient, namespace: str
) -> None:
    from lb_operator.mutex.sweeper import sweep_once

    settings = MutexSettings(sweep_idle_after=2.0)
    mutex: LeaseMutex = await make_mutex("a", settings, sweep=False)
    loop = asyncio.get_running_loop()
    idle = await mutex.try_hold("lb/idle")
    assert idle is not None
    await idle.release()
    busy = await mutex.try_hold("lb/busy")
    assert busy is not None
    async with busy:
        deadline = loop.time() + 10
        while mutex.watch.get(lease_name("lb/idle")) is None or not mutex.watch.synced:
            assert loop.time() < deadline, "the watch never saw the lease"
            await asyncio.sleep(0.01)
        assert await sweep_once(mutex.api, mutex.watch, settings, mutex.is_busy) == 0  # not idle long enough
        while not await sweep_once(mutex.api, mutex.watch, settings, mutex.is_busy):
            assert loop.time() < deadline, "the idle lease was never swept"
            await asyncio.sleep(0.05)
    names = [
        item.metadata.name
        for item in (await client.CoordinationV1Api(api).list_namespaced_lease(namespace)).items
    ]
    assert names == [lease_name("lb/busy")]
