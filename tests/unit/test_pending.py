"""A change outlives the handler attempt that asked for it, and is withdrawn when nobody wants it.

The changes here are stand-ins that wait on events the test sets: what a
change does is the reconcile's (tested in test_reconcile_flow and on the
real API server); this is when it starts, who awaits it, and when it is
cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from prometheus_client import REGISTRY

from lb_operator.handlers import changes
from lb_operator.handlers.pending import REATTACH_DELAY, WITHDRAWN_RETRY, Pending
from lb_operator.handlers.running import DRAINED_RETRY
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL


def _body(generation: int = 1, uid: str = "u-1") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "generation": generation}}


class Stand:
    """A change that takes the lock when ``lock`` is set and ends when ``end`` is set."""

    def __init__(self, outcome: BaseException | None = None) -> None:
        self.lock = asyncio.Event()
        self.end = asyncio.Event()
        self.started = 0
        self.locked = False
        self.ended = False
        self.cancelled = False
        self.withdrawn = asyncio.Event()
        self.outcome = outcome

    async def __call__(self, locked: Callable[[], None]) -> None:
        self.started += 1
        try:
            await self.lock.wait()
            locked()
            self.locked = True
            await self.end.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            self.withdrawn.set()
            raise
        self.ended = True
        if self.outcome is not None:
            raise self.outcome


def _soon(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_change_not_done_by_the_handlers_deadline_goes_on_and_the_retry_takes_its_result() -> None:
    pending, change = Pending(handler_timeout=1.0), Stand()
    with pytest.raises(kopf.TemporaryError) as retried:
        await pending.await_change(_body(), _soon(0.05), change)
    assert retried.value.delay == REATTACH_DELAY
    assert change.started == 1
    assert not change.cancelled, "the change must go on past the handler"

    change.lock.set()
    change.end.set()
    await pending.await_change(_body(), _soon(1.0), change)  # Kopf's retry: the same change, its result
    assert change.started == 1, "the retry started a second change instead of awaiting the first"
    assert change.ended
    assert len(pending) == 0


async def test_what_the_change_raised_is_what_the_handler_raises() -> None:
    pending, change = Pending(handler_timeout=1.0), Stand(kopf.PermanentError("refused"))
    change.lock.set()
    change.end.set()
    with pytest.raises(kopf.PermanentError, match="refused"):
        await pending.await_change(_body(), _soon(1.0), change)


async def test_a_newer_generation_withdraws_a_queued_change_and_starts_its_own() -> None:
    pending, old, new = Pending(handler_timeout=1.0), Stand(), Stand()
    with pytest.raises(kopf.TemporaryError):
        await pending.await_change(_body(1), _soon(0.01), old)
    new.lock.set()
    new.end.set()
    await pending.await_change(_body(2), _soon(1.0), new)
    assert old.cancelled, "a queued change of an older generation must be withdrawn"
    assert not old.locked
    assert new.ended


async def test_a_change_that_holds_the_lock_is_left_to_end() -> None:
    pending, old, new = Pending(handler_timeout=1.0), Stand(), Stand()
    old.lock.set()
    with pytest.raises(kopf.TemporaryError):
        await pending.await_change(_body(1), _soon(0.05), old)
    assert old.locked
    new.lock.set()
    new.end.set()
    await pending.await_change(_body(2), _soon(1.0), new)
    pending.withdraw("u-1", "the test")  # nothing left under that UID: a no-op
    old.end.set()
    await _settle()
    assert old.ended
    assert not old.cancelled, "a change under the lock was cut short (its change in doubt)"


async def test_a_cancelled_handler_withdraws_its_change_if_it_has_not_begun() -> None:
    pending, change = Pending(handler_timeout=1.0), Stand()
    handler = asyncio.create_task(pending.await_change(_body(), _soon(10.0), change))
    await _settle()
    assert change.started == 1
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    await _settle()
    assert change.cancelled
    assert not change.locked
    assert len(pending) == 0


async def test_a_cancelled_handler_leaves_a_change_under_the_lock_to_end() -> None:
    pending, change = Pending(handler_timeout=1.0), Stand()
    change.lock.set()
    handler = asyncio.create_task(pending.await_change(_body(), _soon(10.0), change))
    await _settle()
    assert change.locked
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    change.end.set()
    await _settle()
    assert change.ended
    assert not change.cancelled


@pytest.mark.parametrize("why", ["it left this replica's watch", "it is drained to another replica"])
async def test_a_withdrawn_change_ends_its_awaiting_handler_with_a_later_retry(why: str) -> None:
    # The object is leaving: an immediate retry would only cost Kopf a write of its retry record more.
    pending, change = Pending(handler_timeout=1.0), Stand()
    handler = asyncio.create_task(pending.await_change(_body(), _soon(10.0), change))
    await _settle()
    pending.withdraw("u-1", why)
    with pytest.raises(kopf.TemporaryError, match="withdrawn") as retried:
        await handler
    assert why in str(retried.value)
    assert retried.value.delay == WITHDRAWN_RETRY
    assert change.cancelled


async def test_a_change_nobody_comes_back_for_is_withdrawn() -> None:
    pending, change = Pending(handler_timeout=0.01), Stand()
    pending.abandoned_after = 0.05
    with pytest.raises(kopf.TemporaryError):
        await pending.await_change(_body(), _soon(0.01), change)
    async with asyncio.timeout(5):
        await change.withdrawn.wait()
    assert len(pending) == 0


async def test_a_handler_coming_back_in_time_keeps_its_change() -> None:
    pending, change = Pending(handler_timeout=0.01), Stand()
    pending.abandoned_after = 0.2
    for _ in range(4):  # four handler deadlines, each shorter than abandoned_after, together longer
        with pytest.raises(kopf.TemporaryError):
            await pending.await_change(_body(), _soon(0.1), change)
    assert not change.cancelled
    assert change.started == 1
    change.lock.set()
    change.end.set()
    await pending.await_change(_body(), _soon(1.0), change)
    assert change.ended


async def test_stopping_withdraws_queued_changes_and_gives_locked_ones_a_grace() -> None:
    pending = Pending(handler_timeout=1.0)
    queued, working, stuck = Stand(), Stand(), Stand()
    working.lock.set()
    stuck.lock.set()
    for uid, change in (("q", queued), ("w", working), ("s", stuck)):
        with pytest.raises(kopf.TemporaryError):
            await pending.await_change(_body(uid=uid), _soon(0.01), change)
    closing = asyncio.create_task(pending.close(grace=0.3))
    await _settle()
    assert queued.cancelled
    assert not working.cancelled
    assert not stuck.cancelled
    working.end.set()
    await closing
    assert working.ended, "a change under the lock was not given its grace"
    assert stuck.cancelled, "a change past its grace was not cancelled"


async def test_the_changes_under_way_are_counted_and_so_are_handlers_that_outlived_their_deadline() -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    under_way, outliving = sample("lbop_changes_under_way"), sample("lbop_changes_outliving_handler_total")
    pending, change = Pending(handler_timeout=1.0), Stand()
    with pytest.raises(kopf.TemporaryError):
        await pending.await_change(_body(), _soon(0.01), change)
    assert sample("lbop_changes_under_way") == under_way + 1
    assert sample("lbop_changes_outliving_handler_total") == outliving + 1
    change.lock.set()
    change.end.set()
    await pending.await_change(_body(), _soon(1.0), change)
    assert sample("lbop_changes_under_way") == under_way


async def test_a_drained_object_starts_no_change() -> None:
    pending = Pending(handler_timeout=1.0)
    body = _body()
    body["metadata"]["labels"] = {SHARD_LABEL: "replica-a", DRAIN_LABEL: "replica-b"}
    with pytest.raises(kopf.TemporaryError, match="moving to another replica") as retried:
        await changes.on_change(body, 0, kopf.Memo(context=None, pending=pending))
    assert retried.value.delay == DRAINED_RETRY
    assert len(pending) == 0
