"""The client as an object: where its token comes from, where it must never show, and that it is shared."""

from __future__ import annotations

import asyncio
import copy
import pickle
import traceback
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from lb_operator.cloud import (
    Busy,
    CloudError,
    CloudscaleClient,
    CloudscaleSettings,
    Invalid,
    NotFound,
    Unauthorized,
)
from lb_operator.cloud.models import LoadBalancerSpec, LoadBalancerUpdate, Pool, PoolUpdate
from lb_operator.simulator import Simulator, SimulatorSettings

MISSING = "7d3c0f6e-1f7a-4a8e-9d55-3b1c9a2e0f42"


def test_the_token_is_read_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-the-secret\n")
    assert CloudscaleSettings(token_file=secret).read_token().get_secret_value() == "from-the-secret"


def test_the_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_CLOUD_TOKEN", " from-the-env ")
    assert CloudscaleSettings(token_env="MY_CLOUD_TOKEN").read_token().get_secret_value() == "from-the-env"


def test_a_token_file_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSCALE_API_TOKEN", "from-the-env")
    secret = tmp_path / "token"
    secret.write_text("from-the-secret")
    assert CloudscaleSettings(token_file=secret).read_token().get_secret_value() == "from-the-secret"


async def test_a_missing_token_stops_the_client_from_opening(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLOUDSCALE_API_TOKEN", raising=False)
    with pytest.raises(
        ValueError, match="no cloudscale API token in the environment variable CLOUDSCALE_API_TOKEN"
    ):
        await CloudscaleClient(CloudscaleSettings()).open()
    with pytest.raises(ValueError, match=r"cannot read the cloudscale API token from .*absent"):
        await CloudscaleClient(CloudscaleSettings(token_file=tmp_path / "absent")).open()


def test_settings_refuse_a_connect_timeout_longer_than_the_request_timeout() -> None:
    with pytest.raises(ValidationError, match="connect_timeout <= request_timeout"):
        CloudscaleSettings(token=SecretStr("t"), request_timeout=1, connect_timeout=2)


async def test_the_token_never_shows_in_repr_str_or_errors(
    simulator: Simulator, cloud: CloudscaleClient, token: str, pool: Pool
) -> None:
    shown: list[str] = [repr(cloud), str(cloud), repr(cloud.settings), str(cloud.settings)]
    shown.append(str(cloud.settings.model_dump()))  # a settings dump, e.g. logged at start-up

    errors: list[BaseException] = []
    for failing in (
        cloud.get_pool(MISSING),  # NotFound
        cloud.update_pool(pool.uuid, PoolUpdate.model_construct(name="")),  # Invalid (400)
        cloud.create_load_balancer(
            LoadBalancerSpec.model_construct(name="x", flavor="huge", zone="lpg1", tags={})
        ),
    ):
        try:
            await failing
        except CloudError as exc:
            errors.append(exc)
    async with CloudscaleClient(
        CloudscaleSettings(base_url=simulator.url, token=SecretStr(token + "x"))
    ) as wrong:
        try:
            await (
                wrong.list_pools()
            )  # Unauthorized (401): the wrong token is one character away from the right one
        except Unauthorized as exc:
            errors.append(exc)
    async with CloudscaleClient(
        CloudscaleSettings(base_url="http://127.0.0.1:1/v1", token=SecretStr(token))
    ) as dead:
        try:
            await dead.list_pools()  # Busy: nothing listens there
        except Busy as exc:
            errors.append(exc)
    try:
        CloudscaleSettings(token=SecretStr(token), request_timeout=-1)
    except ValidationError as exc:
        errors.append(exc)

    assert {type(error) for error in errors} == {NotFound, Invalid, Unauthorized, Busy, ValidationError}
    for error in errors:
        shown += [str(error), repr(error), "".join(traceback.format_exception(error))]
    leaks = [text for text in shown if token in text]
    assert leaks == []


def test_the_client_cannot_be_copied_or_pickled() -> None:
    client = CloudscaleClient(CloudscaleSettings(token=SecretStr("t")))
    for duplicate in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="must not be copied; share the one instance"):
            duplicate(client)


async def test_a_client_must_be_open_to_call_and_opens_once(simulator: Simulator, token: str) -> None:
    client = CloudscaleClient(CloudscaleSettings(base_url=simulator.url, token=SecretStr(token)))
    with pytest.raises(RuntimeError, match="not open"):
        await client.list_pools()
    async with client:
        with pytest.raises(RuntimeError, match="already open"):
            await client.open()
        assert await client.list_pools() == []
    with pytest.raises(RuntimeError, match="not open"):
        await client.list_pools()


async def test_an_update_with_nothing_set_sends_no_request(
    cloud: CloudscaleClient, simulator: Simulator, pool: Pool
) -> None:
    before = simulator.requests
    await cloud.update_pool(pool.uuid, PoolUpdate())
    await cloud.update_load_balancer(pool.load_balancer.uuid, LoadBalancerUpdate())
    assert simulator.requests == before


async def test_one_client_serves_many_concurrent_calls(token: str) -> None:
    # Concurrency verified: one shared client, 20 load balancers created at once and 200 reads at once.
    settings = SimulatorSettings(latency=0.05, lb_ready_delay=0.05, token=SecretStr(token))
    async with Simulator(settings) as sim:
        client_settings = CloudscaleSettings(base_url=sim.url, token=SecretStr(token), connection_limit=8)
        async with CloudscaleClient(client_settings) as cloud:
            created = await asyncio.gather(
                *(cloud.create_load_balancer(LoadBalancerSpec(name=f"lb{i}", zone="lpg1")) for i in range(20))
            )
            read = await asyncio.gather(*(cloud.get_load_balancer(lb.uuid) for lb in created * 10))
        stats = await sim.wait_for(lambda stats: stats["in_flight"] == 0, within=10)
    assert len({lb.uuid for lb in created}) == 20
    assert [lb.uuid for lb in read] == [lb.uuid for lb in created * 10]
    assert (stats["mutations"], stats["overlaps"]) == (20, 0)
