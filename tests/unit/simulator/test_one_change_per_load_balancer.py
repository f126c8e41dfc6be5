"""The simulator's central rule: one change per load balancer at a time; every overlap is counted.

Each test makes the overlap certain instead of hoping for it: the first
change is sent, the test waits (on the simulator's counters, with a
deadline) until it is in flight, and only then sends the second. Changes
take long enough (``latency``) for the second to arrive meanwhile, and the
mutation log proves afterwards whether the two ran at the same time.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from simulator_http import SUBNET, StartSimulator, pool_body, seed

DEADLINE = 10.0


def entries(log: list[dict[str, Any]], kind: str, op: str = "create") -> list[dict[str, Any]]:
    return sorted(
        (e for e in log if e["kind"] == kind and e["op"] == op and e["start"] is not None),
        key=lambda e: e["start"],
    )


async def test_second_pool_create_on_one_lb_is_rejected_as_busy(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=1.0)
    lb = seed(sim).load_balancer

    first = asyncio.create_task(api.post("load-balancers/pools", pool_body(lb, "first")))
    await sim.wait_for(lambda stats: stats["in_flight"] == 1, within=DEADLINE)
    second_status, second_body = await api.post("load-balancers/pools", pool_body(lb, "second"))
    first_status, _ = await first

    assert (first_status, second_status) == (201, 409)
    assert "only one change per load balancer" in second_body["detail"]
    stats = await api.stats()
    assert (stats["overlaps"], stats["overlaps_by_load_balancer"]) == (1, {lb: 1})
    assert stats["objects"]["pools"] == 2  # the seeded one and the first; the second was not made
    [rejected] = [e for e in await api.log() if e["outcome"] == "rejected: overlap"]
    assert (rejected["load_balancer"], rejected["kind"], rejected["op"]) == (lb, "pool", "create")


async def test_pool_creates_on_two_lbs_both_succeed_without_overlap(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=1.0)
    one, two = seed(sim, "one").load_balancer, seed(sim, "two").load_balancer

    first = asyncio.create_task(api.post("load-balancers/pools", pool_body(one)))
    await sim.wait_for(lambda stats: stats["in_flight"] == 1, within=DEADLINE)
    second_status, _ = await api.post("load-balancers/pools", pool_body(two))
    first_status, _ = await first

    assert (first_status, second_status) == (201, 201)
    stats = await api.stats()
    assert (stats["overlaps"], stats["overlaps_by_load_balancer"]) == (0, {})
    a, b = entries(await api.log(), "pool")
    assert b["start"] < a["end"]  # they really ran at the same time, on different load balancers


@pytest.mark.parametrize("mode", ["serialize", "queue"])  # queue: the same mode by the name
async def test_serialize_mode_runs_the_second_pool_create_after_the_first(
    start_simulator: StartSimulator, mode: str
) -> None:
    sim, api = await start_simulator(latency=0.5, mode=mode)
    lb = seed(sim).load_balancer

    first = asyncio.create_task(api.post("load-balancers/pools", pool_body(lb, "first")))
    await sim.wait_for(lambda stats: stats["in_flight"] == 1, within=DEADLINE)
    second = asyncio.create_task(api.post("load-balancers/pools", pool_body(lb, "second")))
    await sim.wait_for(lambda stats: stats["queued"] == 1, within=DEADLINE)  # waiting, not refused
    (first_status, _), (second_status, _) = await asyncio.gather(first, second)

    assert (first_status, second_status) == (201, 201)
    a, b = entries(await api.log(), "pool")
    assert b["start"] >= a["end"]  # one after the other
    stats = await api.stats()
    assert (stats["overlaps"], stats["queued"], stats["objects"]["pools"]) == (1, 0, 3)


async def test_a_new_load_balancer_is_busy_until_it_is_running(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0.0, lb_ready_delay=0.5)
    status, lb = await api.post("load-balancers", {"name": "new", "flavor": "lb-standard", "zone": "lpg1"})
    assert (status, lb["status"]) == (201, "changing")

    status, _ = await api.post("load-balancers/pools", pool_body(lb["uuid"]))
    assert status == 409

    await sim.wait_for(lambda stats: stats["in_flight"] == 0, within=DEADLINE)
    assert (await api.get(f"load-balancers/{lb['uuid']}"))[1]["status"] == "running"
    status, _ = await api.post("load-balancers/pools", pool_body(lb["uuid"]))
    assert status == 201


async def test_serialize_mode_holds_changes_until_the_new_load_balancer_is_running(
    start_simulator: StartSimulator,
) -> None:
    _, api = await start_simulator(latency=0.0, lb_ready_delay=0.3, mode="serialize")
    _, lb = await api.post("load-balancers", {"name": "new", "flavor": "lb-standard", "zone": "lpg1"})
    status, _ = await api.post("load-balancers/pools", pool_body(lb["uuid"]))
    assert status == 201
    log = await api.log()
    [built] = entries(log, "load_balancer")
    [pool] = entries(log, "pool")
    assert pool["start"] >= built["end"]


async def test_a_change_to_any_child_holds_its_whole_load_balancer(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=1.0)
    s = seed(sim)
    holder = asyncio.create_task(
        api.patch(f"load-balancers/pools/{s.pool}/members/{s.member}", {"enabled": False})
    )
    await sim.wait_for(lambda stats: stats["in_flight"] == 1, within=DEADLINE)

    members = f"load-balancers/pools/{s.pool}/members"
    probes = await asyncio.gather(
        api.patch(f"load-balancers/{s.load_balancer}", {"name": "renamed"}),
        api.post("load-balancers/pools", pool_body(s.load_balancer, "another")),
        api.delete(f"load-balancers/pools/{s.pool}"),
        api.post(members, {"name": "m2", "protocol_port": 80, "address": "10.0.0.6", "subnet": SUBNET}),
        api.delete(f"{members}/{s.member}"),
        api.patch(f"load-balancers/listeners/{s.listener}", {"protocol_port": 8080}),
        api.delete(f"load-balancers/health-monitors/{s.health_monitor}"),
        api.delete(f"load-balancers/{s.load_balancer}"),
    )
    assert (await holder)[0] == 204
    assert [status for status, _ in probes] == [409] * len(probes)
    stats = await api.stats()
    assert stats["overlaps_by_load_balancer"] == {s.load_balancer: len(probes)}
    assert stats["mutations"] == 1  # the holder only


async def test_many_changes_on_many_load_balancers_never_overlap(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0.3)
    lbs = [seed(sim, f"lb{i}").load_balancer for i in range(25)]

    results = await asyncio.gather(*(api.post("load-balancers/pools", pool_body(lb, "more")) for lb in lbs))

    assert [status for status, _ in results] == [201] * len(lbs)
    stats = await api.stats()
    assert (stats["mutations"], stats["overlaps"], stats["in_flight"]) == (25, 0, 0)
    pools = entries(await api.log(), "pool")
    assert pools[-1]["start"] < pools[0]["end"]  # all 25 were in flight at once


async def test_reads_are_never_held_by_a_change(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=1.0)
    s = seed(sim)
    holder = asyncio.create_task(api.delete(f"load-balancers/listeners/{s.listener}"))
    await sim.wait_for(lambda stats: stats["in_flight"] == 1, within=DEADLINE)
    status, body = await api.get(f"load-balancers/listeners/{s.listener}")
    assert (status, body["uuid"]) == (200, s.listener)
    assert sim.stats()["in_flight"] == 1  # answered while the delete was still in flight
    assert (await holder)[0] == 204


async def test_a_load_balancer_reads_changing_while_a_change_under_it_is_in_flight(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    sim, api = await start_simulator(latency=1.0, state_file=state)
    s = seed(sim)
    lb = f"load-balancers/{s.load_balancer}"
    assert (await api.get(lb))[1]["status"] == "running"

    change = asyncio.create_task(
        api.patch(f"load-balancers/pools/{s.pool}/members/{s.member}", {"enabled": False})
    )
    await sim.wait_for(lambda stats: stats["in_flight"] == 1, within=DEADLINE)
    assert (await api.get(lb))[1]["status"] == "changing"
    [listed] = (await api.get("load-balancers"))[1]
    assert listed["status"] == "changing"
    assert sim.stats()["in_flight"] == 1  # both answered while the member change was still in flight

    assert (await change)[0] == 204
    assert (await api.get(lb))[1]["status"] == "running"
    # Saved during the change, but the transient status is only shown, never stored.
    assert json.loads(state.read_text())["objects"]["load_balancers"][0]["status"] == "running"


async def test_in_async_mode_a_change_is_answered_first_and_its_load_balancer_changes_afterwards(
    start_simulator: StartSimulator,
) -> None:
    sim, api = await start_simulator(latency=60, mode="async")  # applying takes a minute: never awaited here
    s = seed(sim)
    lb = f"load-balancers/{s.load_balancer}"
    assert (await api.get(lb))[1]["status"] == "running"

    status, _ = await asyncio.wait_for(api.patch(f"load-balancers/pools/{s.pool}", {"name": "renamed"}), 10)
    assert status == 204  # answered long before the minute is up
    assert (await api.get(lb))[1]["status"] == "changing"
    status, body = await api.patch(f"load-balancers/listeners/{s.listener}", {"name": "other"})
    assert status == 409, body  # another change while it is changing: refused, as in reject mode
    assert (await api.get(f"load-balancers/pools/{s.pool}"))[1]["name"] == "renamed"
    assert sim.stats()["overlaps"] == 1
