"""Simulators started per test with the settings the test needs, and raw HTTP to them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from simulator_http import Api, StartSimulator

from lb_operator.simulator import Simulator, SimulatorSettings

TOKEN = "sim-token-3b9f"


@pytest.fixture
async def start_simulator() -> AsyncIterator[StartSimulator]:
    """``await start_simulator(latency=1.0, mode="serialize", ...)`` → a running simulator and its API.

    Every simulator requires ``TOKEN`` (the API helper sends it) and is stopped after the test.
    """
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(**settings: Any) -> tuple[Simulator, Api]:
            settings.setdefault("token", TOKEN)
            sim = await stack.enter_async_context(Simulator(SimulatorSettings(**settings)))
            return sim, Api(http, sim.url, TOKEN)

        yield start
