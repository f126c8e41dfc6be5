"""The shared Lease watch: its cache never goes back in time, and it backs off when the server balks."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_leases import FakeLeases, drained, unavailable, until

from lb_operator.mutex import MutexSettings
from lb_operator.mutex.watch import LeaseWatch


def lease(name: str, version: int, holder: str | None = "other/1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(version)},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3, "leaseTransitions": 1},
    }


@pytest.fixture
async def watch(fake: FakeLeases, fast: MutexSettings) -> AsyncIterator[LeaseWatch]:
    watching = LeaseWatch(fake, fast)
    watching.start()
    await until("the first sync", lambda: watching.synced)
    yield watching
    await watching.stop()


def _version(watch: LeaseWatch, name: str) -> str | None:
    seen = watch.get(name)
    return seen.record.resource_version if seen else None


async def test_a_stale_deleted_event_does_not_drop_a_lease_recreated_since(
    fake: FakeLeases, watch: LeaseWatch
) -> None:
    # Swept at 150, re-created by our own update at 151: its answer reaches us before the DELETED event.
    watch.observe(lease("lb-a", 151, holder="replica/1"))
    fake.inject("DELETED", lease("lb-a", 150))
    await drained(fake, watch)
    assert _version(watch, "lb-a") == "151"


async def test_a_deleted_event_newer_than_the_record_drops_it(fake: FakeLeases, watch: LeaseWatch) -> None:
    watch.observe(lease("lb-a", 150))
    fake.inject("DELETED", lease("lb-a", 151))
    await drained(fake, watch)
    assert watch.get("lb-a") is None


async def test_an_older_event_never_rolls_a_record_back(fake: FakeLeases, watch: LeaseWatch) -> None:
    watch.observe(lease("lb-a", 160, holder="replica/1"))
    fake.inject("MODIFIED", lease("lb-a", 155, holder="other/1"))
    await drained(fake, watch)
    seen = watch.get("lb-a")
    assert seen is not None
    assert (seen.record.resource_version, seen.record.holder) == ("160", "replica/1")


async def _relist(fake: FakeLeases, during: Any = None) -> None:
    """Make the watch relist: its next resume is answered 410 Gone. ``during`` runs inside the LIST."""

    async def listed() -> None:
        fake.oldest_watchable = 0
        if during is not None:
            during()

    fake.oldest_watchable = fake.version + 1_000_000
    fake.after["list"].append(listed)
    lists = fake.ledger.requests["list"]
    fake.cut_watches()
    await until("the relist", lambda: fake.ledger.requests["list"] > lists)


async def test_a_relist_keeps_a_lease_written_after_its_snapshot(fake: FakeLeases, watch: LeaseWatch) -> None:
    seen_at_resume: list[str | None] = []

    async def look() -> None:
        seen_at_resume.append(_version(watch, "lb-new"))

    def our_write_lands_meanwhile() -> None:
        # The snapshot is taken; our own create lands and we see its answer before the LIST's.
        written = fake.put("lb-new", {"holderIdentity": "replica/1", "leaseTransitions": 1})
        watch.observe(written)
        fake.before["watch"].append(look)  # what the cache holds once the relist is done

    await _relist(fake, during=our_write_lands_meanwhile)
    await until("the watch to resume", lambda: bool(seen_at_resume))
    assert seen_at_resume[0] is not None, "the relist dropped a lease newer than its snapshot"


async def test_a_relist_drops_what_was_deleted_before_its_snapshot(
    fake: FakeLeases, watch: LeaseWatch
) -> None:
    fake.put("lb-gone", {"holderIdentity": None})
    await until("the lease in the cache", lambda: watch.get("lb-gone") is not None)
    del fake.objects["lb-gone"]  # deleted while the watch was away: no event will tell
    await _relist(fake)
    await until("the synced relist", lambda: watch.synced)
    await drained(fake, watch)
    assert watch.get("lb-gone") is None


async def test_410_gone_relists_and_the_cache_is_current_again(fake: FakeLeases, watch: LeaseWatch) -> None:
    await _relist(fake, during=lambda: fake.put("lb-b", {"holderIdentity": "other/2"}))
    await drained(fake, watch)
    assert watch.synced
    seen = watch.get("lb-b")
    assert seen is not None
    assert seen.record.holder == "other/2"


async def test_a_bookmark_moves_where_the_watch_resumes(fake: FakeLeases, watch: LeaseWatch) -> None:
    fake.version = 5000  # writes to other objects moved the store on; a bookmark says so
    fake.inject("BOOKMARK", {"metadata": {"resourceVersion": "5000"}})
    fake.cut_watches()  # the stream delivers what it has, then ends
    await until("the watch to resume", lambda: len(fake.watch_starts) >= 2)
    assert fake.watch_starts[-1] == "5000"
    assert fake.ledger.requests["list"] == 1  # resumed, not relisted


async def _pauses_between_watch_starts(fake: FakeLeases, fast: MutexSettings, starts: int) -> list[float]:
    watching = LeaseWatch(fake, fast)
    watching.start()
    try:
        await until(f"{starts} watch starts", lambda: len(fake.watch_started_at) >= starts, within=30)
    finally:
        await watching.stop()
    times = fake.watch_started_at[:starts]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_a_refused_watch_is_retried_with_growing_pauses(fake: FakeLeases, fast: MutexSettings) -> None:
    fake.fail_next("watch", unavailable("403 forbidden: cannot watch leases"), times=10_000)
    pauses = await _pauses_between_watch_starts(fake, fast, 6)
    # Doubling from 50 ms (jittered ±20 %): the fifth pause is nominally 0.8 s; without back-off, all
    # five would be a few ms. A loaded machine can only lengthen a pause, never shorten one.
    assert pauses[-1] > pauses[0], pauses
    assert pauses[-1] >= 0.3, pauses
    assert fake.ledger.requests["list"] == len(fake.watch_starts)


async def test_a_watch_cut_at_once_is_retried_with_growing_pauses(
    fake: FakeLeases, fast: MutexSettings
) -> None:
    fake.end_streams_at_once = True
    pauses = await _pauses_between_watch_starts(fake, fast, 6)
    assert pauses[-1] > pauses[0], pauses
    assert pauses[-1] >= 0.3, pauses


async def test_waiting_on_a_lease_the_cache_does_not_hold_waits_for_the_timer(watch: LeaseWatch) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await watch.wait_for_newer("lb-unknown", "7", started + 0.2)
    assert loop.time() - started >= 0.19


async def test_a_newer_record_ends_a_wait_at_once(fake: FakeLeases, watch: LeaseWatch) -> None:
    first = fake.put("lb-c", {"holderIdentity": "other/1"})
    await until("the lease in the cache", lambda: watch.get("lb-c") is not None)
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(
        watch.wait_for_newer("lb-c", first["metadata"]["resourceVersion"], loop.time() + 10)
    )
    await until("the waiter to wait", lambda: watch.waiting("lb-c") == 1)
    fake.put("lb-c", {"holderIdentity": None})
    await asyncio.wait_for(waiter, 2)


async def test_an_unexpected_error_in_the_watch_is_survived_not_fatal(
    fake: FakeLeases, watch: LeaseWatch
) -> None:
    async def garbled() -> None:
        raise ValueError("an event this code did not expect")

    fake.before["watch"].append(garbled)
    fake.cut_watches()  # the next stream starts with the garbled answer
    await until("the watch to restart", lambda: fake.ledger.requests["list"] >= 2)
    fake.put("lb-after", {"holderIdentity": "other/1"})
    await until("the watch to follow again", lambda: watch.get("lb-after") is not None)
    assert watch.synced


def _stalling(fast: MutexSettings) -> MutexSettings:
    return fast.model_copy(update={"watch_stall_timeout": 0.3})


async def test_a_stream_that_holds_back_our_own_write_is_cut_and_the_cache_listed_again(
    fake: FakeLeases, fast: MutexSettings
) -> None:
    watch = LeaseWatch(fake, _stalling(fast))
    watch.start()
    try:
        await until("the first sync", lambda: watch.synced)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        watch.wrote(await fake.replace(lease("lb-a", 0, holder="me/1"), "lb"), sent)
        await until("our write to come back through the stream", lambda: watch.stalled_for() == 0)
        assert watch.fresh_at is not None
        assert watch.fresh_at >= sent
        lists_before = fake.ledger.requests["list"]

        fake.stall_open_watches()  # half-open: connected, silent
        fake.put("lb-b", {"holderIdentity": "other/1", "leaseDurationSeconds": 3}, key="lb/b")
        stalled_at = loop.time()
        watch.wrote(await fake.replace(fake.objects["lb-a"], "lb"), stalled_at)
        await until("the stall to be noticed", lambda: watch.stalls == 1 or watch.get("lb-b"), within=5)
        assert watch.stalls == 1, "the silent stream delivered after all: this test proves nothing"
        await until("the cache to be listed again", lambda: watch.get("lb-b") is not None, within=5)
        assert fake.ledger.requests["list"] == lists_before + 1
        assert watch.fresh_within(1.0)
        assert watch.stalled_for() == 0
    finally:
        await watch.stop()


async def test_an_idle_stream_with_no_write_of_ours_pending_is_not_taken_for_stalled(
    fake: FakeLeases, fast: MutexSettings
) -> None:
    watch = LeaseWatch(fake, _stalling(fast))
    watch.start()
    try:
        await until("the first sync", lambda: watch.synced)
        fake.stall_open_watches()
        await asyncio.sleep(0.6)  # twice the stall timeout, with nothing of ours to wait for
        assert watch.stalls == 0
        assert watch.synced
    finally:
        await watch.stop()


async def test_a_write_while_the_watchdog_fires_does_not_break_the_writer(
    fake: FakeLeases, fast: MutexSettings
) -> None:
    # A hold's renewer adds a probe (and moves the watchdog) from its own task; asyncio refuses to move
    # a timeout that is expiring, which killed the renewer. The moment is a race: stage it directly.
    watch = LeaseWatch(fake, _stalling(fast))
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0) as firing:
            watch._stall = firing  # the open stream's watchdog, as _follow sets it
            try:
                await asyncio.sleep(1)
            finally:
                assert firing.expired()
                watch.wrote(lease("lb-a", 5, holder="me/1"), loop.time())  # must not raise
    assert watch.get("lb-a") is not None  # the write was taken in all the same
