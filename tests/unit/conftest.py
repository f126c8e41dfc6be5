"""Unit-test fixtures: mutexes on the in-memory fake Lease API (fast; stages faults a real server cannot)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_leases import FakeLeases, MakeMutex

from lb_operator.mutex import LeaseMutex, MutexSettings


@pytest.fixture
def fake() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def fast() -> MutexSettings:
    """Short timings, so renewals, loss and expiry happen within a test's second or two."""
    return MutexSettings(
        lease_duration=3, renew_deadline=2, renew_interval=1, request_timeout=1, watch_backoff_max=1
    )


@pytest.fixture
async def make_mutex(fake: FakeLeases, fast: MutexSettings) -> AsyncIterator[MakeMutex]:
    """A started LeaseMutex on the fake (a stand-in replica); all are closed at the end of the test."""
    made: list[LeaseMutex] = []

    def make(identity: str = "replica", settings: MutexSettings | None = None, **kwargs: Any) -> LeaseMutex:
        mutex = LeaseMutex(None, fake.namespace, identity, settings or fast, lease_calls=fake, **kwargs)
        mutex.start()
        made.append(mutex)
        return mutex

    try:
        yield make
    finally:
        for mutex in made:
            await mutex.close()
