"""The cloudscale client against the simulator: every kind, every operation, the shapes both agree on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lb_operator.cloud import CloudscaleClient, NotFound
from lb_operator.cloud.models import (
    HealthMonitorSpec,
    HealthMonitorUpdate,
    HttpCheckSpec,
    HttpCheckUpdate,
    ListenerSpec,
    ListenerUpdate,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerUpdate,
    MemberSpec,
    MemberUpdate,
    Pool,
    PoolSpec,
    PoolUpdate,
    VipAddressSpec,
)
from lb_operator.simulator import Simulator

SUBNET = "2e5a7f4c-95a3-4cbb-8d1e-0b6a4c3f1d2e"


def member_spec(name: str = "m1", address: str = "10.0.1.11", **extra: object) -> MemberSpec:
    return MemberSpec.model_validate(
        {"name": name, "protocol_port": 8080, "address": address, "subnet": SUBNET, **extra}
    )


# --- load balancers -------------------------------------------------------------------------------


async def test_a_new_load_balancer_is_changing_then_running(
    cloud: CloudscaleClient, simulator: Simulator
) -> None:
    created = await cloud.create_load_balancer(LoadBalancerSpec(name="web", zone="lpg1", tags={"team": "a"}))
    assert created.status == "changing"
    assert (created.flavor.slug, created.zone.slug, created.tags) == ("lb-standard", "lpg1", {"team": "a"})
    assert sorted(vip.version for vip in created.vip_addresses) == [4, 6]  # public: one of each
    assert str(created.href).endswith(f"/v1/load-balancers/{created.uuid}")

    await simulator.wait_for(lambda stats: stats["in_flight"] == 0, within=10)
    assert (await cloud.get_load_balancer(created.uuid)).status == "running"


async def test_a_load_balancer_in_a_private_subnet_keeps_its_vip(
    cloud: CloudscaleClient, simulator: Simulator
) -> None:
    created = await cloud.create_load_balancer(
        LoadBalancerSpec(
            name="internal", zone="rma1", vip_addresses=[VipAddressSpec(subnet=SUBNET, address="10.7.0.7")]
        )
    )
    [vip] = created.vip_addresses
    assert (vip.address, vip.version, vip.subnet.uuid) == ("10.7.0.7", 4, SUBNET)


async def test_load_balancer_update_changes_name_and_tags_only(
    cloud: CloudscaleClient, lb: LoadBalancer
) -> None:
    await cloud.update_load_balancer(lb.uuid, LoadBalancerUpdate(name="renamed", tags={"env": "prod"}))
    changed = await cloud.get_load_balancer(lb.uuid)
    assert (changed.name, changed.tags, changed.flavor.slug) == ("renamed", {"env": "prod"}, "lb-standard")
    with pytest.raises(ValidationError, match="flavor"):
        LoadBalancerUpdate.model_validate({"flavor": "lb-large"})


async def test_load_balancers_are_listed_by_tag(cloud: CloudscaleClient, simulator: Simulator) -> None:
    blue = await cloud.create_load_balancer(LoadBalancerSpec(name="b", zone="lpg1", tags={"color": "blue"}))
    await cloud.create_load_balancer(LoadBalancerSpec(name="g", zone="lpg1", tags={"color": "green"}))
    assert [found.uuid for found in await cloud.list_load_balancers({"color": "blue"})] == [blue.uuid]
    assert len(await cloud.list_load_balancers()) == 2
    assert await cloud.list_load_balancers({"color": "blue", "size": "xl"}) == []


async def test_deleting_a_load_balancer_deletes_its_children(
    cloud: CloudscaleClient, simulator: Simulator, lb: LoadBalancer, pool: Pool
) -> None:
    member = await cloud.create_member(pool.uuid, member_spec())
    listener = await cloud.create_listener(ListenerSpec(name="l", pool=pool.uuid, protocol_port=80))
    monitor = await cloud.create_health_monitor(HealthMonitorSpec(pool=pool.uuid, type="tcp"))

    await cloud.delete_load_balancer(lb.uuid)

    for missing in (
        cloud.get_load_balancer(lb.uuid),
        cloud.get_pool(pool.uuid),
        cloud.get_member(pool.uuid, member.uuid),
        cloud.get_listener(listener.uuid),
        cloud.get_health_monitor(monitor.uuid),
    ):
        with pytest.raises(NotFound):
            await missing
    assert simulator.stats()["objects"] == dict.fromkeys(
        ("load_balancers", "pools", "members", "listeners", "health_monitors"), 0
    )


# --- pools ----------------------------------------------------------------------------------------


async def test_pool_round_trip(cloud: CloudscaleClient, lb: LoadBalancer) -> None:
    created = await cloud.create_pool(
        PoolSpec(
            name="p",
            load_balancer=lb.uuid,
            algorithm="least_connections",
            protocol="proxyv2",
            tags={"k": "v"},
        )
    )
    assert (created.load_balancer.uuid, created.load_balancer.name) == (lb.uuid, lb.name)
    assert (created.algorithm, created.protocol) == ("least_connections", "proxyv2")

    await cloud.update_pool(created.uuid, PoolUpdate(name="p2"))
    fetched = await cloud.get_pool(created.uuid)
    assert (fetched.name, fetched.tags) == ("p2", {"k": "v"})  # what was not set did not change
    assert [found.uuid for found in await cloud.list_pools({"k": "v"})] == [created.uuid]

    await cloud.delete_pool(created.uuid)
    with pytest.raises(NotFound):
        await cloud.get_pool(created.uuid)


async def test_deleting_a_pool_leaves_its_listeners_without_a_pool(
    cloud: CloudscaleClient, lb: LoadBalancer, pool: Pool
) -> None:
    listener = await cloud.create_listener(ListenerSpec(name="l", pool=pool.uuid, protocol_port=443))
    await cloud.create_health_monitor(HealthMonitorSpec(pool=pool.uuid, type="ping"))
    await cloud.delete_pool(pool.uuid)
    orphan = await cloud.get_listener(listener.uuid)
    assert orphan.pool is None
    assert orphan.load_balancer.uuid == lb.uuid
    assert await cloud.list_health_monitors() == []


# --- pool members ---------------------------------------------------------------------------------


async def test_member_round_trip_under_its_pool(
    cloud: CloudscaleClient, lb: LoadBalancer, pool: Pool
) -> None:
    created = await cloud.create_member(pool.uuid, member_spec(tags={"role": "web"}))
    assert (created.enabled, created.monitor_port, created.monitor_status) == (True, None, "no_monitor")
    assert (created.pool.uuid, created.load_balancer.uuid, created.subnet.uuid) == (
        pool.uuid,
        lb.uuid,
        SUBNET,
    )
    assert f"/pools/{pool.uuid}/members/{created.uuid}" in str(created.href)

    await cloud.update_member(pool.uuid, created.uuid, MemberUpdate(enabled=False))
    fetched = await cloud.get_member(pool.uuid, created.uuid)
    assert (fetched.enabled, fetched.name, fetched.protocol_port) == (False, "m1", 8080)

    await cloud.create_member(pool.uuid, member_spec("m2", "10.0.1.12"))
    assert [m.uuid for m in await cloud.list_members(pool.uuid, {"role": "web"})] == [created.uuid]
    assert len(await cloud.list_members(pool.uuid)) == 2

    await cloud.delete_member(pool.uuid, created.uuid)
    with pytest.raises(NotFound):
        await cloud.get_member(pool.uuid, created.uuid)


async def test_a_member_is_not_found_under_another_pool(
    cloud: CloudscaleClient, lb: LoadBalancer, pool: Pool
) -> None:
    other = await cloud.create_pool(
        PoolSpec(name="o", load_balancer=lb.uuid, algorithm="source_ip", protocol="tcp")
    )
    member = await cloud.create_member(pool.uuid, member_spec())
    with pytest.raises(NotFound):
        await cloud.get_member(other.uuid, member.uuid)


async def test_a_member_turns_up_once_its_pool_is_monitored(cloud: CloudscaleClient, pool: Pool) -> None:
    member = await cloud.create_member(pool.uuid, member_spec(monitor_port=9000))
    assert member.monitor_port == 9000
    await cloud.create_health_monitor(HealthMonitorSpec(pool=pool.uuid, type="tcp"))
    assert (await cloud.get_member(pool.uuid, member.uuid)).monitor_status == "up"


# --- listeners ------------------------------------------------------------------------------------


async def test_listener_round_trip(cloud: CloudscaleClient, lb: LoadBalancer, pool: Pool) -> None:
    created = await cloud.create_listener(
        ListenerSpec(name="https", pool=pool.uuid, protocol_port=443, allowed_cidrs=["192.0.2.0/24"])
    )
    assert (created.protocol, created.protocol_port, created.allowed_cidrs) == ("tcp", 443, ["192.0.2.0/24"])
    # The API's defaults (cloudscale Go SDK fixtures): 50 s client data, 5 s connect, 50 s member data.
    assert (
        created.timeout_client_data_ms,
        created.timeout_member_connect_ms,
        created.timeout_member_data_ms,
    ) == (50_000, 5_000, 50_000)
    assert created.pool is not None
    assert created.pool.uuid == pool.uuid
    assert created.load_balancer.uuid == lb.uuid

    await cloud.update_listener(
        created.uuid, ListenerUpdate(protocol_port=8443, allowed_cidrs=[], timeout_member_connect_ms=1000)
    )
    fetched = await cloud.get_listener(created.uuid)
    assert (fetched.protocol_port, fetched.allowed_cidrs, fetched.timeout_member_connect_ms) == (
        8443,
        [],
        1000,
    )
    assert [found.uuid for found in await cloud.list_listeners()] == [created.uuid]

    await cloud.delete_listener(created.uuid)
    assert await cloud.list_listeners() == []


# --- health monitors ------------------------------------------------------------------------------


async def test_health_monitor_round_trip_with_http_defaults(
    cloud: CloudscaleClient, lb: LoadBalancer, pool: Pool
) -> None:
    created = await cloud.create_health_monitor(
        HealthMonitorSpec(pool=pool.uuid, type="http", http=HttpCheckSpec(host="www.example.com"))
    )
    # The API's defaults, as the Go SDK's integration tests and the Terraform docs state them.
    assert (created.delay_s, created.timeout_s, created.up_threshold, created.down_threshold) == (2, 1, 2, 3)
    assert created.http is not None
    assert (
        created.http.expected_codes,
        created.http.method,
        created.http.url_path,
        created.http.version,
    ) == (
        ["200"],
        "GET",
        "/",
        "1.1",
    )
    assert created.http.host == "www.example.com"
    assert (created.pool.uuid, created.load_balancer.uuid) == (pool.uuid, lb.uuid)

    await cloud.update_health_monitor(
        created.uuid, HealthMonitorUpdate(delay_s=5, http=HttpCheckUpdate(expected_codes=["200-204"]))
    )
    fetched = await cloud.get_health_monitor(created.uuid)
    assert fetched.delay_s == 5
    assert fetched.http is not None
    assert (fetched.http.expected_codes, fetched.http.method, fetched.http.host) == (
        ["200-204"],
        "GET",  # partial update of `http`: the other options stay
        "www.example.com",
    )
    assert [found.uuid for found in await cloud.list_health_monitors()] == [created.uuid]

    await cloud.delete_health_monitor(created.uuid)
    with pytest.raises(NotFound):
        await cloud.get_health_monitor(created.uuid)


async def test_a_tcp_health_monitor_has_no_http_options(cloud: CloudscaleClient, pool: Pool) -> None:
    monitor = await cloud.create_health_monitor(
        HealthMonitorSpec(pool=pool.uuid, type="tcp", delay_s=10, timeout_s=3)
    )
    assert (monitor.type, monitor.http, monitor.delay_s, monitor.timeout_s) == ("tcp", None, 10, 3)
