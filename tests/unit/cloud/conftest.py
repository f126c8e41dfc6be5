"""A simulator per test and the cloudscale client pointed at it: no Kubernetes, no network beyond loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import SecretStr

from lb_operator.cloud import CloudscaleClient, CloudscaleSettings
from lb_operator.cloud.models import LoadBalancer, LoadBalancerSpec, Pool, PoolSpec
from lb_operator.simulator import Simulator, SimulatorSettings

TOKEN = "tok-5f0c2d9e-never-print-me"

MakeLoadBalancer = Callable[[str], Awaitable[LoadBalancer]]


@pytest.fixture
def token() -> str:
    """The API token of the simulated account (a value a test can search for in output)."""
    return TOKEN


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """A fast simulator (changes take 10 ms, a new LB is running after 50 ms) that requires ``TOKEN``."""
    settings = SimulatorSettings(latency=0.01, lb_ready_delay=0.05, token=SecretStr(TOKEN))
    async with Simulator(settings) as sim:
        yield sim


@pytest.fixture
async def cloud(simulator: Simulator) -> AsyncIterator[CloudscaleClient]:
    """The cloudscale client of the account the simulator serves."""
    settings = CloudscaleSettings(base_url=simulator.url, token=SecretStr(TOKEN), request_timeout=10)
    async with CloudscaleClient(settings) as client:
        yield client


@pytest.fixture
def make_load_balancer(cloud: CloudscaleClient, simulator: Simulator) -> MakeLoadBalancer:
    """Creates a load balancer and returns it once it is ``running`` (waits on the simulator, no polling)."""

    async def make(name: str) -> LoadBalancer:
        created = await cloud.create_load_balancer(LoadBalancerSpec(name=name, zone="lpg1"))
        await simulator.wait_for(lambda stats: stats["in_flight"] == 0, within=10)
        lb = await cloud.get_load_balancer(created.uuid)
        assert lb.status == "running"
        return lb

    return make


@pytest.fixture
async def lb(make_load_balancer: MakeLoadBalancer) -> LoadBalancer:
    """A running load balancer."""
    return await make_load_balancer("web")


@pytest.fixture
async def pool(cloud: CloudscaleClient, lb: LoadBalancer) -> Pool:
    """A round-robin TCP pool on ``lb``."""
    return await cloud.create_pool(
        PoolSpec(name="pool", load_balancer=lb.uuid, algorithm="round_robin", protocol="tcp")
    )
