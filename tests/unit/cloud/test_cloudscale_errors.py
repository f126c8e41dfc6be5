"""Every error path of the client: what the API answers decides Invalid, NotFound, Busy or Unauthorized."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from lb_operator.cloud import (
    Busy,
    CloudError,
    CloudscaleClient,
    CloudscaleSettings,
    Invalid,
    NotFound,
    Unauthorized,
)
from lb_operator.cloud.models import (
    HealthMonitorSpec,
    LoadBalancer,
    LoadBalancerSpec,
    Pool,
    PoolSpec,
    PoolUpdate,
)
from lb_operator.simulator import Simulator, SimulatorSettings

MISSING = "7d3c0f6e-1f7a-4a8e-9d55-3b1c9a2e0f42"


def sim_settings(sim: Simulator, token: str) -> CloudscaleSettings:
    return CloudscaleSettings(base_url=sim.url, token=SecretStr(token))


# --- against the simulator ------------------------------------------------------------------------


async def test_an_invalid_spec_reaches_the_caller_with_the_field_message(
    cloud: CloudscaleClient, simulator: Simulator
) -> None:
    with pytest.raises(Invalid) as caught:
        await cloud.create_pool(
            PoolSpec(name="p", load_balancer=MISSING, algorithm="round_robin", protocol="tcp")
        )
    assert caught.value.status == 400
    assert caught.value.fields == {"load_balancer": [f"Object with uuid={MISSING} does not exist."]}
    assert f"load_balancer: Object with uuid={MISSING} does not exist." in str(caught.value)
    assert "create pool (POST load-balancers/pools)" in str(caught.value)
    assert simulator.stats()["mutations"] == 0  # refused before it became a change


async def test_a_value_only_the_api_refuses_is_invalid(cloud: CloudscaleClient, lb: LoadBalancer) -> None:
    # model_construct skips the client's own checks, so the request reaches the API as a typo would.
    spec = PoolSpec.model_construct(
        name="p", load_balancer=lb.uuid, algorithm="weighted", protocol="tcp", tags={}
    )
    with pytest.raises(Invalid, match=r'algorithm: "weighted" is not a valid choice\.'):
        await cloud.create_pool(spec)


async def test_a_second_health_monitor_on_a_pool_is_invalid(cloud: CloudscaleClient, pool: Pool) -> None:
    await cloud.create_health_monitor(HealthMonitorSpec(pool=pool.uuid, type="ping"))
    with pytest.raises(Invalid) as caught:
        await cloud.create_health_monitor(HealthMonitorSpec(pool=pool.uuid, type="tcp"))
    assert "pool" in caught.value.fields


@pytest.mark.parametrize(
    "read",
    [
        lambda cloud: cloud.get_load_balancer(MISSING),
        lambda cloud: cloud.get_pool(MISSING),
        lambda cloud: cloud.get_member(MISSING, MISSING),
        lambda cloud: cloud.get_listener(MISSING),
        lambda cloud: cloud.get_health_monitor(MISSING),
        lambda cloud: cloud.list_members(MISSING),
    ],
    ids=["load_balancer", "pool", "member", "listener", "health_monitor", "members_of_missing_pool"],
)
async def test_reading_a_missing_object_is_not_found(
    cloud: CloudscaleClient, read: Callable[[CloudscaleClient], Awaitable[object]]
) -> None:
    with pytest.raises(NotFound, match="HTTP 404"):
        await read(cloud)


@pytest.mark.parametrize(
    "delete",
    [
        lambda cloud: cloud.delete_load_balancer(MISSING),
        lambda cloud: cloud.delete_pool(MISSING),
        lambda cloud: cloud.delete_member(MISSING, MISSING),
        lambda cloud: cloud.delete_listener(MISSING),
        lambda cloud: cloud.delete_health_monitor(MISSING),
    ],
    ids=["load_balancer", "pool", "member", "listener", "health_monitor"],
)
async def test_deleting_a_missing_object_succeeds(
    cloud: CloudscaleClient, simulator: Simulator, delete: Callable[[CloudscaleClient], Awaitable[None]]
) -> None:
    await delete(cloud)
    assert simulator.requests == 1  # the request was sent, and its 404 taken as success


async def test_an_empty_uuid_is_refused_before_any_request(
    cloud: CloudscaleClient, simulator: Simulator
) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        await cloud.delete_pool("")  # would otherwise address the whole collection
    assert simulator.requests == 0


async def test_a_change_while_the_load_balancer_is_busy_is_busy(token: str) -> None:
    # A load balancer that stays `changing` for the whole test: any change under it overlaps.
    settings = SimulatorSettings(latency=0.0, lb_ready_delay=60, token=SecretStr(token))
    async with Simulator(settings) as sim:
        client_settings = CloudscaleSettings(base_url=sim.url, token=SecretStr(token))
        async with CloudscaleClient(client_settings) as cloud:
            lb = await cloud.create_load_balancer(LoadBalancerSpec(name="new", zone="lpg1"))
            with pytest.raises(Busy) as caught:
                await cloud.create_pool(
                    PoolSpec(name="p", load_balancer=lb.uuid, algorithm="round_robin", protocol="tcp")
                )
    assert caught.value.status == 409
    assert "only one change per load balancer" in str(caught.value)
    assert "retry later" in str(caught.value)


async def test_a_server_error_is_busy(token: str) -> None:
    settings = SimulatorSettings(fault_500=1.0, seed=1, token=SecretStr(token))
    async with Simulator(settings) as sim, CloudscaleClient(sim_settings(sim, token)) as cloud:
        with pytest.raises(Busy) as caught:
            await cloud.list_load_balancers()
    assert caught.value.status == 500
    assert "injected fault" in str(caught.value)


async def test_a_request_without_an_answer_in_time_is_busy(token: str) -> None:
    settings = SimulatorSettings(fault_hang=1.0, hang_seconds=30, seed=1, token=SecretStr(token))
    async with Simulator(settings) as sim:
        client_settings = CloudscaleSettings(
            base_url=sim.url, token=SecretStr(token), request_timeout=0.3, connect_timeout=0.3
        )
        async with CloudscaleClient(client_settings) as cloud:
            with pytest.raises(Busy, match=r"no complete answer within 0.3s") as caught:
                await cloud.get_load_balancer(MISSING)
    assert caught.value.status is None


async def test_an_unreachable_api_is_busy(token: str) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = CloudscaleSettings(
        base_url=f"http://127.0.0.1:{port}/v1", token=SecretStr(token), request_timeout=5
    )
    async with CloudscaleClient(settings) as cloud:
        with pytest.raises(Busy, match="ClientConnectorError") as caught:
            await cloud.list_pools()
    assert caught.value.status is None


async def test_a_refused_token_is_unauthorized_not_a_rejected_spec(simulator: Simulator) -> None:
    settings = CloudscaleSettings(base_url=simulator.url, token=SecretStr("wrong-token"))
    async with CloudscaleClient(settings) as cloud:
        with pytest.raises(Unauthorized) as caught:
            await cloud.list_load_balancers()
    assert not isinstance(caught.value, Invalid)  # the spec is not at fault: callers retry
    assert caught.value.status == 401
    assert "the API token was not accepted (HTTP 401: Invalid token.)" in str(caught.value)
    assert "wrong-token" not in str(caught.value)


async def test_a_token_file_rewritten_after_a_refusal_is_used_at_once(
    simulator: Simulator, token: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("revoked-token\n")
    # A recheck interval of an hour: only the refusal can make the client look at the file again.
    settings = CloudscaleSettings(base_url=simulator.url, token_file=token_file, token_recheck=3600)
    async with CloudscaleClient(settings) as cloud:
        with pytest.raises(Unauthorized):
            await cloud.list_load_balancers()
        replacement = tmp_path / "token.new"
        replacement.write_text(f"{token}\n")
        replacement.replace(token_file)  # as the kubelet rotates a Secret: a new file swapped in
        assert await cloud.list_load_balancers() == []


async def test_a_token_file_rewritten_while_the_old_token_works_is_picked_up_at_the_next_check(
    token: str, tmp_path: Path
) -> None:
    settings = SimulatorSettings(latency=0, token=SecretStr(token))
    token_file = tmp_path / "token"
    token_file.write_text(token)
    async with Simulator(settings) as sim:
        client_settings = CloudscaleSettings(base_url=sim.url, token_file=token_file, token_recheck=0.01)
        async with CloudscaleClient(client_settings) as cloud:
            await cloud.list_pools()
            replacement = tmp_path / "token.new"
            replacement.write_text("a-token-the-api-does-not-know")
            replacement.replace(token_file)
            with pytest.raises(Unauthorized):
                await until_refused(cloud)


async def until_refused(cloud: CloudscaleClient) -> None:
    """Call until the client has picked up the new token (the recheck interval is 10 ms), at most 5 s."""
    async with asyncio.timeout(5):
        while True:
            await cloud.list_pools()
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("url", ["http://api.cloudscale.ch/v1", "http://10.0.0.1:8080/v1"])
def test_a_token_is_never_sent_in_cleartext_to_another_host(url: str) -> None:
    with pytest.raises(ValueError, match="refusing to send the API token in cleartext"):
        CloudscaleSettings(base_url=url, token=SecretStr("t"))


@pytest.mark.parametrize(
    "url",
    ["https://api.cloudscale.ch/v1", "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:80/v1"],
)
def test_https_anywhere_and_plain_http_to_this_host_are_accepted(url: str) -> None:
    assert CloudscaleSettings(base_url=url, token=SecretStr("t")).base_url == url


def test_the_default_is_the_real_api_over_https() -> None:
    assert CloudscaleSettings().base_url == "https://api.cloudscale.ch/v1"


async def test_a_cancelled_call_is_cancelled_not_busy(token: str) -> None:
    settings = SimulatorSettings(fault_hang=1.0, hang_seconds=30, seed=1, token=SecretStr(token))
    async with Simulator(settings) as sim, CloudscaleClient(sim_settings(sim, token)) as cloud:
        call = asyncio.create_task(cloud.get_load_balancer(MISSING))
        await sim.wait_for(lambda stats: stats["faults"].get("hang") == 1, within=10)  # the request hangs
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


# --- against a stub that answers what the real API may answer -------------------------------------

Answer = tuple[int, str, str]  # status, content type, body


@pytest.fixture
async def stub() -> AsyncIterator[Callable[[Answer], Awaitable[CloudscaleClient]]]:
    """Serves one fixed answer to every request; yields a factory of clients pointed at it."""
    runners: list[web.AppRunner] = []
    clients: list[CloudscaleClient] = []

    async def serve(answer: Answer) -> CloudscaleClient:
        status, content_type, body = answer

        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, content_type=content_type, text=body)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        client = CloudscaleClient(
            CloudscaleSettings(base_url=f"http://127.0.0.1:{port}/v1", token=SecretStr("t"))
        )
        await client.open()
        clients.append(client)
        return client

    yield serve
    for client in clients:
        await client.close()
    for runner in runners:
        await runner.cleanup()


async def test_field_messages_as_plain_strings_are_read_too(
    stub: Callable[[Answer], Awaitable[CloudscaleClient]],
) -> None:
    # The Go SDK reads error bodies as {field: "message"}; DRF sends lists. Both must work.
    cloud = await stub((400, "application/json", '{"name": "This field may not be blank."}'))
    with pytest.raises(Invalid) as caught:
        await cloud.update_pool(MISSING, PoolUpdate(name="x"))
    assert caught.value.fields == {"name": ["This field may not be blank."]}


async def test_nested_field_messages_get_dotted_names(
    stub: Callable[[Answer], Awaitable[CloudscaleClient]],
) -> None:
    cloud = await stub(
        (
            400,
            "application/json",
            '{"http": {"method": ["\\"GOT\\" is not a valid choice."]},'
            ' "vip_addresses": [{}, {"subnet": ["Must be a valid UUID."]}],'
            ' "non_field_errors": ["Only one attribute can be changed at a time."]}',
        )
    )
    with pytest.raises(Invalid) as caught:
        await cloud.list_pools()
    assert caught.value.fields == {
        "http.method": ['"GOT" is not a valid choice.'],
        "vip_addresses[1].subnet": ["Must be a valid UUID."],
    }
    assert caught.value.detail == "Only one attribute can be changed at a time."


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ((409, "application/json", '{"detail": "Load balancer is busy."}'), 409),
        ((429, "application/json", '{"detail": "Request was throttled."}'), 429),
        ((503, "text/html", "<html><body>maintenance</body></html>"), 503),
        ((502, "text/plain", ""), 502),
    ],
    ids=["conflict", "throttled", "maintenance_page", "bad_gateway_without_body"],
)
async def test_retriable_answers_are_busy(
    stub: Callable[[Answer], Awaitable[CloudscaleClient]], answer: Answer, status: int
) -> None:
    cloud = await stub(answer)
    with pytest.raises(Busy) as caught:
        await cloud.list_listeners()
    assert caught.value.status == status


async def test_a_success_that_is_not_json_is_a_cloud_error_of_its_own(
    stub: Callable[[Answer], Awaitable[CloudscaleClient]],
) -> None:
    cloud = await stub((200, "text/html", "<html>login</html>"))
    with pytest.raises(CloudError) as caught:
        await cloud.list_load_balancers()
    assert type(caught.value) is CloudError  # neither the user's fault nor known to be transient


async def test_an_answer_of_the_wrong_shape_is_a_cloud_error(
    stub: Callable[[Answer], Awaitable[CloudscaleClient]],
) -> None:
    cloud = await stub((200, "application/json", '{"uuid": "x"}'))
    with pytest.raises(CloudError, match="answered a LoadBalancer this client cannot read"):
        await cloud.get_load_balancer(MISSING)
