"""Fixtures for the Lease mutex: mutexes bound to a fresh namespace of the real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from kubernetes.aio import client

from lb_operator.mutex import LeaseMutex, MutexSettings

MakeMutex = Callable[..., Awaitable[LeaseMutex]]


@pytest.fixture
async def make_mutex(api: client.ApiClient, namespace: str) -> AsyncIterator[MakeMutex]:
    """Start a LeaseMutex (a stand-in replica) in the test's namespace; all are closed at the end."""
    async with AsyncExitStack() as stack:

        async def make(
            identity: str = "replica", settings: MutexSettings | None = None, **kwargs: Any
        ) -> LeaseMutex:
            mutex = LeaseMutex(api, namespace, identity, settings, **kwargs)
            return await stack.enter_async_context(mutex)

        yield make


@pytest.fixture
def fast() -> MutexSettings:
    """Short timings so expiry and loss tests finish in seconds."""
    return MutexSettings(lease_duration=3, renew_deadline=2, renew_interval=0.5, request_timeout=2)
