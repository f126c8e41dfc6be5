"""The Octavia client against Octavia's own API server: the protocol's promises hold on a second cloud.

What Octavia says is Octavia's (its validation, its 409 while a load
balancer is PENDING_*, its tag filters); only the provider's completion of
PENDING_* is played by the test server (``tools/octavia/serve.py``).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from lb_operator.cloud import Busy, Invalid, NotFound
from lb_operator.cloud.models import (
    HealthMonitorSpec,
    HealthMonitorUpdate,
    HttpCheckSpec,
    HttpCheckUpdate,
    ListenerSpec,
    ListenerUpdate,
    LoadBalancerSpec,
    LoadBalancerUpdate,
    MemberSpec,
    MemberUpdate,
    PoolSpec,
    VipAddressSpec,
)
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.reconcile.engine import until_settled
from lb_operator.testing.octavia import SUBNET, OctaviaProcess

pytestmark = pytest.mark.integration

SETTLE_WITHIN = 10.0


class _Polling:
    """What ``until_settled`` reads of a reconcile context: the cloud, and how often to look."""

    def __init__(self, cloud: OctaviaClient) -> None:
        self.cloud = cloud
        self.settings = SimpleNamespace(ready_poll=0.05)


async def _settled(client: OctaviaClient, lb: str) -> None:
    """Until the load balancer is no longer ``changing`` (PENDING_*), within a deadline."""
    async with asyncio.timeout(SETTLE_WITHIN):
        await until_settled(_Polling(client), lb)  # the operator's own wait, on the real API


async def _load_balancer(client: OctaviaClient, uid: str) -> str:
    created = await client.create_load_balancer(
        LoadBalancerSpec(name=f"lb-{uid}", vip_addresses=[VipAddressSpec(subnet=SUBNET)], tags={"uid": uid})
    )
    assert created.status == "changing", "a new load balancer is PENDING_CREATE"
    await _settled(client, created.uuid)
    return created.uuid


async def test_a_whole_tree_is_made_read_back_and_found_by_its_tags(client: OctaviaClient) -> None:
    lb = await _load_balancer(client, "tree")
    assert (await client.get_load_balancer(lb)).status == "running"
    pool = await client.create_pool(
        PoolSpec(
            name="web", load_balancer=lb, algorithm="least_connections", protocol="tcp", tags={"uid": "p"}
        )
    )
    assert (pool.algorithm, pool.protocol, pool.load_balancer.uuid) == ("least_connections", "tcp", lb)
    await _settled(client, lb)
    member = await client.create_member(
        pool.uuid,
        MemberSpec(name="m", protocol_port=8080, address="10.0.0.7", subnet=SUBNET, tags={"uid": "m"}),
    )
    assert (member.pool.uuid, member.load_balancer.uuid, member.address) == (pool.uuid, lb, "10.0.0.7")
    await _settled(client, lb)
    listener = await client.create_listener(
        ListenerSpec(
            name="l", pool=pool.uuid, protocol_port=80, allowed_cidrs=["10.0.0.0/8"], tags={"uid": "l"}
        )
    )
    assert listener.pool is not None
    assert (listener.pool.uuid, listener.load_balancer.uuid) == (pool.uuid, lb)
    assert (listener.protocol, listener.protocol_port, listener.allowed_cidrs) == ("tcp", 80, ["10.0.0.0/8"])
    await _settled(client, lb)
    monitor = await client.create_health_monitor(
        HealthMonitorSpec(
            pool=pool.uuid,
            type="http",
            http=HttpCheckSpec(expected_codes=["200", "204"], url_path="/healthz", version="1.1", host="web"),
            tags={"uid": "h"},
        )
    )
    assert (monitor.type, monitor.delay_s, monitor.up_threshold, monitor.down_threshold) == ("http", 2, 2, 3)
    assert monitor.http is not None
    assert monitor.http.expected_codes == ["200", "204"]
    assert (monitor.pool.uuid, monitor.load_balancer.uuid) == (pool.uuid, lb)
    await _settled(client, lb)

    assert [found.uuid for found in await client.list_load_balancers(tags={"uid": "tree"})] == [lb]
    assert [found.uuid for found in await client.list_pools(tags={"uid": "p"})] == [pool.uuid]
    assert [found.uuid for found in await client.list_members(pool.uuid, tags={"uid": "m"})] == [member.uuid]
    assert [found.uuid for found in await client.list_listeners(tags={"uid": "l"})] == [listener.uuid]
    assert [found.uuid for found in await client.list_health_monitors(tags={"uid": "h"})] == [monitor.uuid]
    assert await client.list_pools(tags={"uid": "nobody"}) == []

    await client.delete_load_balancer(lb)  # cascade: the whole tree
    async with asyncio.timeout(SETTLE_WITHIN):
        while True:
            try:
                await client.get_load_balancer(lb)
            except NotFound:
                break
            await asyncio.sleep(0.02)
    assert await client.list_pools(tags={"uid": "p"}) == []
    assert await client.list_listeners(tags={"uid": "l"}) == []
    assert await client.list_health_monitors(tags={"uid": "h"}) == []
    with pytest.raises(NotFound):
        await client.get_pool(pool.uuid)


async def test_a_change_under_a_changing_load_balancer_is_busy_not_invalid(
    client: OctaviaClient, octavia: OctaviaProcess
) -> None:
    created = await client.create_load_balancer(
        LoadBalancerSpec(name="busy", vip_addresses=[VipAddressSpec(subnet=SUBNET)])
    )
    before = octavia.stats()["conflicts"]
    with pytest.raises(Busy, match="immutable") as caught:
        await client.create_pool(
            PoolSpec(name="p", load_balancer=created.uuid, algorithm="round_robin", protocol="tcp")
        )
    assert caught.value.status == 409
    assert octavia.stats()["conflicts"] == before + 1
    await _settled(client, created.uuid)
    await client.delete_load_balancer(created.uuid)


async def test_updates_change_what_they_name_and_read_back_in_the_protocols_terms(
    client: OctaviaClient,
) -> None:
    lb = await _load_balancer(client, "updates")
    pool = await client.create_pool(
        PoolSpec(name="p", load_balancer=lb, algorithm="round_robin", protocol="tcp")
    )
    await _settled(client, lb)
    member = await client.create_member(
        pool.uuid, MemberSpec(name="m", protocol_port=80, address="10.0.1.1", subnet=SUBNET)
    )
    await _settled(client, lb)
    listener = await client.create_listener(ListenerSpec(name="l", pool=pool.uuid, protocol_port=81))
    await _settled(client, lb)
    monitor = await client.create_health_monitor(HealthMonitorSpec(pool=pool.uuid, type="http"))
    await _settled(client, lb)

    await client.update_load_balancer(lb, LoadBalancerUpdate(name="renamed", tags={"env": "prod"}))
    await _settled(client, lb)
    changed_lb = await client.get_load_balancer(lb)
    assert (changed_lb.name, changed_lb.tags) == ("renamed", {"env": "prod"})

    await client.update_member(pool.uuid, member.uuid, MemberUpdate(enabled=False, tags={"k": "v"}))
    await _settled(client, lb)
    changed_member = await client.get_member(pool.uuid, member.uuid)
    assert (changed_member.enabled, changed_member.tags) == (False, {"k": "v"})

    await client.update_listener(
        listener.uuid, ListenerUpdate(allowed_cidrs=["192.0.2.0/24"], timeout_client_data_ms=1000)
    )
    await _settled(client, lb)
    changed_listener = await client.get_listener(listener.uuid)
    assert (changed_listener.allowed_cidrs, changed_listener.timeout_client_data_ms) == (
        ["192.0.2.0/24"],
        1000,
    )

    await client.update_health_monitor(
        monitor.uuid,
        HealthMonitorUpdate(delay_s=7, down_threshold=5, http=HttpCheckUpdate(url_path="/ready")),
    )
    await _settled(client, lb)
    changed_monitor = await client.get_health_monitor(monitor.uuid)
    assert (changed_monitor.delay_s, changed_monitor.down_threshold) == (7, 5)
    assert changed_monitor.http is not None
    assert changed_monitor.http.url_path == "/ready"

    await client.delete_member(pool.uuid, member.uuid)
    await _settled(client, lb)
    assert await client.list_members(pool.uuid) == []
    await client.delete_member(pool.uuid, member.uuid)  # gone already: success
    await client.delete_load_balancer(lb)


async def test_what_octavia_cannot_do_is_refused_before_any_request(
    client: OctaviaClient, octavia: OctaviaProcess
) -> None:
    before = octavia.stats()["requests"]
    with pytest.raises(Invalid, match="exactly one VIP"):
        await client.create_load_balancer(LoadBalancerSpec(name="public"))
    with pytest.raises(Invalid, match="exactly one VIP"):
        await client.create_load_balancer(
            LoadBalancerSpec(
                name="two", vip_addresses=[VipAddressSpec(subnet=SUBNET), VipAddressSpec(subnet=SUBNET)]
            )
        )
    with pytest.raises(Invalid, match="cannot change a listener's protocol_port"):
        await client.update_listener(
            "0b7a2c55-0000-4000-8000-000000000001", ListenerUpdate(protocol_port=8443)
        )
    assert octavia.stats()["requests"] == before, "a request was sent for what Octavia cannot do"


async def test_octavias_own_refusals_are_invalid_with_its_message(client: OctaviaClient) -> None:
    with pytest.raises(Invalid, match="availability zone"):
        await client.create_load_balancer(
            LoadBalancerSpec(name="z", zone="nowhere", vip_addresses=[VipAddressSpec(subnet=SUBNET)])
        )
    with pytest.raises(Invalid, match="no load-balancer flavor named 'lb-standard'"):
        await client.create_load_balancer(
            LoadBalancerSpec(name="f", flavor="lb-standard", vip_addresses=[VipAddressSpec(subnet=SUBNET)])
        )


async def test_a_missing_object_is_not_found_and_its_delete_succeeds(client: OctaviaClient) -> None:
    missing = "0b7a2c55-0000-4000-8000-00000000dead"
    with pytest.raises(NotFound):
        await client.get_load_balancer(missing)
    with pytest.raises(NotFound):
        await client.get_listener(missing)
    await client.delete_health_monitor(missing)
    await client.delete_load_balancer(missing)


async def test_a_409_that_means_already_there_is_invalid_and_a_host_needs_no_version(
    client: OctaviaClient,
) -> None:
    lb = await _load_balancer(client, "duplicates")
    pool = await client.create_pool(
        PoolSpec(name="p", load_balancer=lb, algorithm="round_robin", protocol="tcp")
    )
    await _settled(client, lb)
    await client.create_listener(ListenerSpec(name="a", pool=pool.uuid, protocol_port=8000))
    await _settled(client, lb)
    other = await client.create_pool(
        PoolSpec(name="q", load_balancer=lb, algorithm="round_robin", protocol="tcp")
    )
    await _settled(client, lb)
    with pytest.raises(Invalid, match="409") as caught:  # the port is taken: waiting will not free it
        await client.create_listener(ListenerSpec(name="b", pool=other.uuid, protocol_port=8000))
    assert caught.value.status == 409
    await _settled(client, lb)
    # Octavia refuses a domain name without an HTTP version; cloudscale's default (1.1) is sent with it.
    monitor = await client.create_health_monitor(
        HealthMonitorSpec(pool=pool.uuid, type="http", http=HttpCheckSpec(host="web.example"))
    )
    assert monitor.http is not None
    assert (monitor.http.host, monitor.http.version) == ("web.example", "1.1")
    await _settled(client, lb)
    await client.delete_load_balancer(lb)
