"""The simulator's wire contract: validation like the API's, the token, faults, the state file, /debug."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from simulator_http import SUBNET, StartSimulator, pool_body, seed

from lb_operator.simulator import Simulator, SimulatorSettings
from lb_operator.simulator.store import StateError

MISSING = "7d3c0f6e-1f7a-4a8e-9d55-3b1c9a2e0f42"
LB = {"name": "web", "flavor": "lb-standard", "zone": "lpg1"}

# --- validation -----------------------------------------------------------------------------------


async def test_required_fields_are_named_one_by_one(start_simulator: StartSimulator) -> None:
    _, api = await start_simulator(latency=0)
    status, body = await api.post("load-balancers/pools", {})
    assert status == 400
    assert body == {
        name: ["This field is required."] for name in ("name", "load_balancer", "algorithm", "protocol")
    }


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        ("load-balancers", {**LB, "zone": "mars1"}, {"zone": ['"mars1" is not a valid choice.']}),
        ("load-balancers", {**LB, "name": "  "}, {"name": ["This field may not be blank."]}),
        ("load-balancers", {**LB, "name": None}, {"name": ["This field may not be null."]}),
        (
            "load-balancers",
            {**LB, "vip_addresses": [{"subnet": "nope", "address": "10.0.0.1"}]},
            {"vip_addresses": [{"subnet": ["Must be a valid UUID."]}]},
        ),
        (
            "load-balancers",
            {**LB, "vip_addresses": [{}]},
            {"vip_addresses": [{"non_field_errors": ["Either subnet or address is required."]}]},
        ),
        (
            "load-balancers",
            {**LB, "tags": ["a"]},
            {"tags": ['Expected a dictionary of items but got type "list".']},
        ),
        (
            "load-balancers/listeners",
            {"name": "l", "pool": "{pool}", "protocol": "sctp", "protocol_port": 0},
            {
                "protocol": ['"sctp" is not a valid choice.'],
                "protocol_port": ["Ensure this value is greater than or equal to 1."],
            },
        ),
        (
            "load-balancers/listeners",
            {
                "name": "l",
                "pool": "{pool}",
                "protocol": "tcp",
                "protocol_port": 443,
                "allowed_cidrs": ["10.0.0.0/33"],
            },
            {"allowed_cidrs": {"0": ["Enter a valid network in CIDR notation."]}},
        ),
        (
            "load-balancers/health-monitors",
            {"pool": "{pool}", "type": "tcp", "up_threshold": 11},
            {"up_threshold": ["Ensure this value is less than or equal to 10."]},
        ),
        (
            "load-balancers/health-monitors",
            {
                "pool": "{pool}",
                "type": "http",
                "http": {"method": "FETCH", "expected_codes": ["200", "300-399"]},
            },
            {
                "http": {
                    "method": ['"FETCH" is not a valid choice.'],
                    "expected_codes": ["A range must be the only entry."],
                }
            },
        ),
        (
            "load-balancers/pools/{pool}/members",
            {"name": "m", "protocol_port": "http", "address": "10.0.0.300", "subnet": SUBNET},
            {
                "protocol_port": ["A valid integer is required."],
                "address": ["Enter a valid IPv4 or IPv6 address."],
            },
        ),
    ],
    ids=[
        "zone_enum",
        "blank_name",
        "null_name",
        "nested_vip",
        "vip_without_subnet_or_address",
        "tags_type",
        "listener_enum_and_range",
        "cidr",
        "threshold_range",
        "nested_http",
        "member_types",
    ],
)
async def test_invalid_bodies_get_field_messages_and_change_nothing(
    start_simulator: StartSimulator, path: str, body: dict[str, object], errors: dict[str, object]
) -> None:
    sim, api = await start_simulator(latency=0)
    s = seed(sim)
    before = sim.stats()["objects"]
    status, answer = await api.post(
        path.replace("{pool}", s.pool), json.loads(json.dumps(body).replace("{pool}", s.pool))
    )
    assert (status, answer) == (400, errors)
    assert sim.stats()["objects"] == before
    assert sim.stats()["mutations"] == 0


async def test_parents_must_exist(start_simulator: StartSimulator) -> None:
    _, api = await start_simulator(latency=0)
    status, body = await api.post("load-balancers/pools", pool_body(MISSING))
    assert (status, body) == (400, {"load_balancer": [f"Object with uuid={MISSING} does not exist."]})
    status, body = await api.post("load-balancers/health-monitors", {"pool": MISSING, "type": "ping"})
    assert (status, body) == (400, {"pool": [f"Object with uuid={MISSING} does not exist."]})
    status, body = await api.post(f"load-balancers/pools/{MISSING}/members", {})
    assert (status, body) == (404, {"detail": "Not found."})  # the parent is in the path


async def test_a_pool_has_at_most_one_health_monitor(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0)
    s = seed(sim)  # comes with a health monitor
    status, body = await api.post("load-balancers/health-monitors", {"pool": s.pool, "type": "ping"})
    assert status == 400
    assert list(body) == ["pool"]


async def test_a_listener_port_is_used_once_per_load_balancer(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0)
    s = seed(sim)  # its listener uses port 80
    status, body = await api.post(
        "load-balancers/listeners", {"name": "again", "pool": s.pool, "protocol": "tcp", "protocol_port": 80}
    )
    assert (status, list(body)) == (400, ["protocol_port"])
    status, _ = await api.patch(f"load-balancers/listeners/{s.listener}", {"protocol_port": 80})
    assert status == 204  # keeping its own port is fine


async def test_udp_listens_beside_tcp_and_only_to_udp_pools(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0)
    s = seed(sim)  # a tcp pool, and its tcp listener on port 80
    status, body = await api.post(
        "load-balancers/pools",
        {"name": "dns", "load_balancer": s.load_balancer, "algorithm": "round_robin", "protocol": "udp"},
    )
    assert status == 201, body
    udp_pool = body["uuid"]
    udp = {"name": "dns", "pool": udp_pool, "protocol": "udp", "protocol_port": 80}
    status, body = await api.post("load-balancers/listeners", udp)  # 80/udp beside 80/tcp
    assert status == 201, body
    assert (await api.post("load-balancers/listeners", {**udp, "name": "again"}))[0] == 400  # 80/udp twice
    status, body = await api.post("load-balancers/listeners", {**udp, "pool": s.pool, "protocol_port": 53})
    assert (status, list(body)) == (400, ["protocol"]), body  # udp to a tcp pool
    monitor = {"pool": udp_pool, "type": "udp-connect", "delay_s": 2, "timeout_s": 2}
    assert await api.post("load-balancers/health-monitors", monitor) == (
        400,
        {"delay_s": ["Must be at least 3 for udp-connect."]},
    )
    status, body = await api.post("load-balancers/health-monitors", {**monitor, "delay_s": 3})
    assert status == 201, body


async def test_only_updatable_fields_may_be_patched(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0)
    s = seed(sim)
    for path, body in (
        (f"load-balancers/{s.load_balancer}", {"flavor": "lb-standard", "name": "x"}),
        (f"load-balancers/pools/{s.pool}", {"algorithm": "source_ip"}),
        (f"load-balancers/pools/{s.pool}/members/{s.member}", {"address": "10.0.0.9"}),
        (f"load-balancers/listeners/{s.listener}", {"pool": s.pool}),
        (f"load-balancers/health-monitors/{s.health_monitor}", {"type": "ping"}),
    ):
        status, answer = await api.patch(path, body)
        assert status == 400, path
        assert all("cannot be changed" in messages[0] for messages in answer.values()), answer
    assert (await api.get(f"load-balancers/{s.load_balancer}"))[1]["name"] == "web"  # nothing applied


async def test_health_monitor_rules_across_fields(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(latency=0)
    s = seed(sim)  # a tcp monitor with the defaults (delay 2 s, timeout 1 s)
    monitor = f"load-balancers/health-monitors/{s.health_monitor}"
    assert await api.patch(monitor, {"timeout_s": 5}) == (
        400,
        {"timeout_s": ["Must not be greater than delay_s."]},
    )
    assert (await api.patch(monitor, {"http": {"url_path": "/health"}}))[0] == 400  # no HTTP options for tcp
    await api.delete(monitor)
    status, body = await api.post(
        "load-balancers/health-monitors",
        {"pool": s.pool, "type": "https", "http": {"version": "1.0", "host": "example.com"}},
    )
    assert (status, body) == (400, {"http": {"host": ['Requires version "1.1".']}})


async def test_malformed_json_and_unknown_routes_answer_json(start_simulator: StartSimulator) -> None:
    _, api = await start_simulator(latency=0)
    async with api.http.post(
        f"{api.url}/load-balancers", data=b"{not json", headers={"Authorization": f"Bearer {api.token}"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["detail"].startswith("JSON parse error")
    assert await api.get("servers") == (404, {"detail": "Not found."})
    assert await api.get("load-balancers/not-a-uuid") == (404, {"detail": "Not found."})
    assert await api.call("PUT", "load-balancers") == (405, {"detail": 'Method "PUT" not allowed.'})


# --- the token ------------------------------------------------------------------------------------


async def test_a_configured_token_is_required_everywhere(start_simulator: StartSimulator) -> None:
    _, api = await start_simulator(latency=0, token="right")
    async with api.http.get(f"{api.url}/load-balancers") as response:
        assert (response.status, await response.json()) == (
            401,
            {"detail": "Authentication credentials were not provided."},
        )
    assert await api.call("GET", "load-balancers", token="wrong") == (401, {"detail": "Invalid token."})
    assert await api.call("GET", "/debug/stats", token="wrong") == (401, {"detail": "Invalid token."})
    assert await api.call("GET", "load-balancers", token="right") == (200, [])


# --- faults ---------------------------------------------------------------------------------------


async def test_faults_repeat_with_the_same_seed(start_simulator: StartSimulator) -> None:
    runs = []
    for _ in range(2):
        _, api = await start_simulator(fault_500=0.4, seed=42)
        runs.append([(await api.get("load-balancers"))[0] for _ in range(30)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


async def test_a_hung_request_ends_with_a_gateway_timeout(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(fault_hang=1.0, hang_seconds=0.2, seed=1)
    status, body = await api.get("load-balancers")
    assert status == 504
    assert "hung" in body["detail"]
    assert sim.stats()["faults"] == {"hang": 1}


async def test_stopping_ends_hung_requests_at_once(start_simulator: StartSimulator) -> None:
    sim, api = await start_simulator(fault_hang=1.0, hang_seconds=120, seed=1)
    request = asyncio.create_task(api.get("load-balancers"))
    await sim.wait_for(lambda stats: stats["faults"].get("hang") == 1, within=10)
    async with asyncio.timeout(10):  # far below hang_seconds
        await sim.stop()
        status, _ = await request
    assert status == 504


DEADLINE = 10.0
NO_FAULTS = {"fault_500": 0.0, "fault_hang": 0.0, "fault_lost": 0.0, "hang_seconds": 30.0, "methods": []}


async def test_faults_set_at_runtime_apply_only_to_the_chosen_methods(
    start_simulator: StartSimulator,
) -> None:
    sim, api = await start_simulator(latency=0)
    pool = f"load-balancers/pools/{seed(sim).pool}"
    assert await api.get("/debug/faults") == (200, NO_FAULTS)

    only_patch = {**NO_FAULTS, "fault_500": 1.0, "methods": ["PATCH"]}
    assert await api.call("PUT", "/debug/faults", {"fault_500": 1, "methods": ["PATCH"]}) == (200, only_patch)
    assert await api.get("/debug/faults") == (200, only_patch)
    assert (await api.get(pool))[0] == 200
    assert await api.patch(pool, {"name": "renamed"}) == (
        500,
        {"detail": "Internal server error (injected fault)."},
    )

    # Omitted fields keep their values; no methods named means every method.
    assert await api.call("PUT", "/debug/faults", {"methods": []}) == (200, {**only_patch, "methods": []})
    assert (await api.get(pool))[0] == 500
    assert (await api.call("PUT", "/debug/faults", {"fault_500": 0}))[1] == NO_FAULTS
    assert (await api.patch(pool, {"name": "renamed"}))[0] == 204
    assert sim.stats()["faults"] == {"500": 2}
    assert sim.stats()["mutations"] == 1  # a failed request never reached the load balancer


async def test_a_lost_answer_is_a_504_for_a_change_the_cloud_applies_after_it(
    start_simulator: StartSimulator,
) -> None:
    sim, api = await start_simulator(latency=0.2)
    pool = f"load-balancers/pools/{seed(sim).pool}"
    await api.call("PUT", "/debug/faults", {"fault_lost": 1, "methods": ["PATCH"]})
    assert await api.patch(pool, {"name": "renamed"}) == (
        504,
        {"detail": "Gateway timeout (injected fault: the answer was lost)."},
    )
    assert (await api.get(pool))[1]["name"] != "renamed", "applied before the answer: nothing is in doubt"
    await sim.wait_for(lambda stats: stats["mutations"] == 1 and stats["in_flight"] == 0, within=DEADLINE)
    assert (await api.get(pool))[1]["name"] == "renamed"  # applied after the client gave up
    assert sim.stats()["faults"] == {"lost": 1}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"fault_500": 1.5}, {"fault_500": ["Ensure this value is less than or equal to 1."]}),
        ({"fault_hang": -0.1}, {"fault_hang": ["Ensure this value is greater than or equal to 0."]}),
        ({"fault_500": "half"}, {"fault_500": ["A valid number is required."]}),
        (
            {"fault_500": 0.6},
            {"fault_500": ["fault_500 + fault_hang + fault_lost must not exceed 1, got 0.6 + 0.5 + 0.0."]},
        ),
        ({"hang_seconds": 0}, {"hang_seconds": ["Ensure this value is greater than 0."]}),
        ({"hang_seconds": None}, {"hang_seconds": ["This field may not be null."]}),
        (
            {"methods": ["PATCH", "FETCH"]},
            {"methods": ['"FETCH" is not a valid choice.', "Choose among GET, POST, PATCH, DELETE."]},
        ),
        ({"methods": "PATCH"}, {"methods": ['Expected a list of items but got type "str".']}),
        ({"fault500": 1}, {"fault500": ["Unknown field."]}),
        ([], {"non_field_errors": ["Expected a JSON object of fault settings."]}),
    ],
    ids=[
        "above_1",
        "below_0",
        "not_a_number",
        "sum_with_the_current_hang",
        "hang_0",
        "null",
        "method",
        "methods_type",
        "unknown_field",
        "not_an_object",
    ],
)
async def test_bad_fault_settings_answer_400_naming_the_field_and_change_nothing(
    start_simulator: StartSimulator, body: object, errors: dict[str, object]
) -> None:
    _, api = await start_simulator(fault_hang=0.5, fault_methods=["DELETE"])
    before = await api.get("/debug/faults")
    assert await api.call("PUT", "/debug/faults", body) == (400, errors)
    assert await api.get("/debug/faults") == before


async def test_a_hanging_patch_does_not_hold_up_a_read_of_the_same_object(
    start_simulator: StartSimulator,
) -> None:
    sim, api = await start_simulator(latency=0, hang_seconds=120)
    pool = f"load-balancers/pools/{seed(sim).pool}"
    await api.call("PUT", "/debug/faults", {"fault_hang": 1, "methods": ["PATCH"]})
    patch = asyncio.create_task(api.patch(pool, {"name": "renamed"}))
    await sim.wait_for(lambda stats: stats["faults"].get("hang") == 1, within=DEADLINE)

    status, body = await api.get(pool)
    assert (status, body["name"]) == (200, "pool")
    assert not patch.done()  # still hanging; it ends when the simulator stops, far below hang_seconds
    async with asyncio.timeout(DEADLINE):
        await sim.stop()
        assert (await patch)[0] == 504


async def test_faults_of_the_chosen_methods_repeat_with_the_same_seed_whatever_else_runs(
    start_simulator: StartSimulator,
) -> None:
    runs = []
    for reads in (0, 3):  # other requests in between do not use up rolls of the dice
        sim, api = await start_simulator(latency=0, fault_500=0.5, fault_methods=["PATCH"], seed=7)
        pool = f"load-balancers/pools/{seed(sim).pool}"
        statuses = []
        for _ in range(20):
            for _ in range(reads):
                assert (await api.get(pool))[0] == 200
            statuses.append((await api.patch(pool, {"name": "renamed"}))[0])
        runs.append(statuses)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {204, 500}


# --- the state file -------------------------------------------------------------------------------


async def test_the_state_file_keeps_objects_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fast = {"latency": 0.0, "lb_ready_delay": 0.0, "state_file": state}
    async with Simulator(SimulatorSettings(**fast)) as sim:
        s = seed(sim)
        await sim.save()
    async with Simulator(SimulatorSettings(**fast)) as again:
        assert again.stats()["objects"] == {
            "load_balancers": 1,
            "pools": 1,
            "members": 1,
            "listeners": 1,
            "health_monitors": 1,
        }
        assert again.store.get("member", s.member) == sim.store.get("member", s.member)


async def test_a_load_balancer_still_changing_at_shutdown_becomes_running_after_a_restart(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    first, api = await start_simulator(latency=0.0, lb_ready_delay=120, state_file=state)
    _, lb = await api.post("load-balancers", LB)
    await first.stop()
    assert json.loads(state.read_text())["objects"]["load_balancers"][0]["status"] == "changing"

    second, api = await start_simulator(latency=0.0, lb_ready_delay=0.05, state_file=state)
    await second.wait_for(lambda stats: stats["in_flight"] == 0, within=10)
    assert (await api.get(f"load-balancers/{lb['uuid']}"))[1]["status"] == "running"


async def test_a_damaged_state_file_is_refused_with_its_name(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"format": 1, "objects": {}}')
    with pytest.raises(StateError, match=r"state.json is a damaged simulator state"):
        await Simulator(SimulatorSettings(state_file=state)).start()


# --- /debug ---------------------------------------------------------------------------------------


async def test_the_mutation_log_says_what_ran_on_which_load_balancer_and_when(
    start_simulator: StartSimulator,
) -> None:
    sim, api = await start_simulator(latency=0.05)
    s = seed(sim)
    await api.patch(f"load-balancers/pools/{s.pool}", {"name": "renamed"})
    await api.delete(f"load-balancers/{s.load_balancer}")
    log = await api.log()
    assert [(e["load_balancer"], e["kind"], e["op"], e["outcome"]) for e in log] == [
        (s.load_balancer, "pool", "update", "ok"),
        (s.load_balancer, "load_balancer", "delete", "ok"),
    ]
    for entry in log:
        assert entry["arrived"] <= entry["start"] < entry["end"]
    stats = await api.stats()
    assert stats["objects"] == dict.fromkeys(stats["objects"], 0)
    assert (stats["mutations"], stats["in_flight"], stats["requests"]) == (2, 0, 2)
