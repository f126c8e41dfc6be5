"""The operator end to end: real kube-apiserver, the simulator as cloud, `lb-operator run` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.aio import client
from operator_harness import ON_OCTAVIA, Operator, Simulator, is_ready, objects, wait_for

from lb_operator.api import GROUP
from lb_operator.mutex import KEY_ANNOTATION, LOCK_LABEL, LeaseMutex
from lb_operator.reconcile.engine import family_key
from lb_operator.testing import Cluster
from lb_operator.testing.cluster import REPO_ROOT
from lb_operator.testing.fleet import OCTAVIA_SUBNET, fleet, to_yaml

RECONCILE_WORKER = Path(__file__).with_name("reconcile_worker.py")
FLEET = (5, 4, 3)  # load balancers, pools per LB, members per pool (+ a listener and a monitor per pool)
FLEET_SIZE = 5 * (1 + 4 * (1 + 3 + 2))  # 125 objects


def _start(crds: Cluster, simulator: Simulator, logs: Path, namespace: str, **settings: Any) -> Operator:
    log = logs / f"operator-{len(list(logs.glob('operator-*')))}.log"
    return Operator(crds, simulator, log, namespace, **settings)


@pytest.fixture
def operator(crds: Cluster, ns: str, simulator: Simulator, logs: Path) -> Iterator[Operator]:
    running = _start(crds, simulator, logs, ns)
    yield running
    running.stop()


def _apply(cluster: Cluster, manifests: list[dict[str, Any]]) -> None:
    applied = cluster.kubectl("apply", "-f", "-", input=to_yaml(manifests), timeout=120)
    assert applied.returncode == 0, applied.stderr


def _all_ready(cluster: Cluster, namespace: str, count: int) -> bool:
    found = objects(cluster, namespace)
    return len(found) == count and all(is_ready(o) for o in found)


def _by_uuid(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["uuid"]: item for item in items}


def _assert_cloud_matches(cluster: Cluster, namespace: str, simulator: Simulator) -> None:
    """Every object's cloud twin has the fields its spec asks for."""
    lbs = _by_uuid(simulator.list("load-balancers"))
    pools = _by_uuid(simulator.list("load-balancers/pools"))
    listeners = _by_uuid(simulator.list("load-balancers/listeners"))
    monitors = _by_uuid(simulator.list("load-balancers/health-monitors"))
    for obj in objects(cluster, namespace):
        spec, uid = obj["spec"], obj["status"]["uuid"]
        kind = obj["kind"]
        if kind == "LoadBalancer":
            if not ON_OCTAVIA:  # Octavia has neither zones nor these flavors
                assert lbs[uid]["zone"]["slug"] == spec["zone"]
                assert lbs[uid]["flavor"]["slug"] == spec.get("flavor", "lb-standard")
            assert lbs[uid]["tags"]["fleet"] == spec["tags"]["fleet"]
        elif kind == "LoadBalancerPool":
            assert pools[uid]["algorithm"] == spec["algorithm"]
            assert pools[uid]["protocol"] == spec["protocol"]
            assert pools[uid]["load_balancer"]["uuid"] == obj["status"]["loadBalancerUUID"]
        elif kind == "LoadBalancerPoolMember":
            members = _by_uuid(simulator.list(f"load-balancers/pools/{obj['status']['poolUUID']}/members"))
            assert members[uid]["address"] == spec["address"]
            assert members[uid]["protocol_port"] == spec["protocolPort"]
            assert members[uid]["enabled"] == spec["enabled"]
        elif kind == "LoadBalancerListener":
            assert listeners[uid]["protocol_port"] == spec["protocolPort"]
            assert listeners[uid]["pool"]["uuid"] == obj["status"]["poolUUID"]
        else:
            assert monitors[uid]["type"] == spec["type"]
            assert monitors[uid]["http"]["url_path"] == spec["http"]["urlPath"]
    counts = simulator.stats()["objects"]
    assert counts == {"load_balancers": 5, "pools": 20, "members": 60, "listeners": 20, "health_monitors": 20}


def test_a_fleet_applied_at_once_becomes_ready_without_a_cloud_conflict(
    crds: Cluster, ns: str, simulator: Simulator, operator: Operator
) -> None:
    started = time.monotonic()
    _apply(crds, fleet(ns, *FLEET))

    def progress() -> bool:
        found = objects(crds, ns)
        ready = sum(is_ready(o) for o in found)
        print(f"{time.monotonic() - started:.1f}s {ready}/{len(found)} Ready; simulator {simulator.stats()}")
        return len(found) == FLEET_SIZE and all(is_ready(o) for o in found)

    wait_for("every object to be Ready", progress, 240, 1)
    print(f"{FLEET_SIZE} objects Ready in {time.monotonic() - started:.1f}s; simulator: {simulator.stats()}")
    assert simulator.stats()["overlaps"] == 0
    _assert_cloud_matches(crds, ns, simulator)


def test_without_locking_the_cloud_sees_conflicts(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path
) -> None:
    unlocked = _start(crds, simulator, logs, ns, locking="false", sharding="false")
    try:
        _apply(crds, fleet(ns, *FLEET))
        wait_for("the cloud to report an overlap", lambda: simulator.stats()["overlaps"] > 0, 300, 0.5)
    finally:
        unlocked.stop()


def test_updates_reach_the_cloud(crds: Cluster, ns: str, simulator: Simulator, operator: Operator) -> None:
    manifests = fleet(ns, 1, 1, 1)
    _apply(crds, manifests)
    wait_for("the fleet to be Ready", lambda: _all_ready(crds, ns, len(manifests)), 120)
    # Kopf's bookkeeping costs no write of its own (handlers.bookkeeping): the fenced status is the record.
    # Before: every handled object carried Kopf's diff-base annotation (and its marker), one more write.
    kopf_state = {
        f"{o['kind']}/{o['metadata']['name']}": sorted(
            key for key in o["metadata"].get("annotations") or {} if key.startswith(f"{GROUP}/")
        )
        for o in objects(crds, ns)
    }
    assert all(not keys for keys in kopf_state.values()), kopf_state
    patched = crds.kubectl(
        "patch", "lbmember", "lb0-pool0-m0", "-n", ns, "--type=merge", "-p", '{"spec": {"enabled": false}}'
    )
    assert patched.returncode == 0, patched.stderr
    patched = crds.kubectl(
        "patch", "lb", "lb0", "-n", ns, "--type=merge", "-p", '{"spec": {"tags": {"fleet": "changed"}}}'
    )
    assert patched.returncode == 0, patched.stderr
    member = next(o for o in objects(crds, ns) if o["kind"] == "LoadBalancerPoolMember")
    pool_uuid, member_uuid = member["status"]["poolUUID"], member["status"]["uuid"]

    def member_disabled() -> bool:
        members = _by_uuid(simulator.list(f"load-balancers/pools/{pool_uuid}/members"))
        return members[member_uuid]["enabled"] is False

    wait_for("the member to be disabled in the cloud", member_disabled, 60)
    wait_for(
        "the LB tags to change in the cloud",
        lambda: simulator.list("load-balancers")[0]["tags"].get("fleet") == "changed",
        60,
    )
    rejected = crds.kubectl(
        "patch", "lbmember", "lb0-pool0-m0", "-n", ns, "--type=merge", "-p", '{"spec": {"protocolPort": 9}}'
    )
    assert rejected.returncode != 0
    assert "protocolPort is immutable" in rejected.stderr


def _conditions(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, dict[str, Any]]:
    got = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json")
    if got.returncode != 0:
        return {}
    return {c["type"]: c for c in json.loads(got.stdout).get("status", {}).get("conditions", [])}


def test_children_applied_before_their_parent_wait_then_become_ready(
    crds: Cluster, ns: str, simulator: Simulator, operator: Operator
) -> None:
    manifests = fleet(ns, 1, 1, 2)
    parent, children = manifests[0], manifests[1:]
    _apply(crds, children)
    wait_for(
        "the pool to wait with ParentNotReady",
        lambda: (
            _conditions(crds, ns, "lbpool", "lb0-pool0").get("Ready", {}).get("reason") == "ParentNotReady"
        ),
        60,
    )
    member = _conditions(crds, ns, "lbmember", "lb0-pool0-m0")
    wait_for(
        "the member to wait with ParentNotReady",
        lambda: (
            _conditions(crds, ns, "lbmember", "lb0-pool0-m0").get("Ready", {}).get("reason")
            == "ParentNotReady"
        ),
        60,
    )
    del member
    assert simulator.stats()["mutations"] == 0, "a child called the cloud before its parent existed"
    _apply(crds, [parent])
    wait_for("everything to be Ready", lambda: _all_ready(crds, ns, len(manifests)), 120)


async def _lock_leases(api: client.ApiClient, keys: set[str]) -> list[str]:
    leases = await client.CoordinationV1Api(api).list_namespaced_lease("default", label_selector=LOCK_LABEL)
    return [
        lease.metadata.name
        for lease in leases.items
        if (lease.metadata.annotations or {}).get(KEY_ANNOTATION) in keys
    ]


async def test_deleting_everything_empties_the_cloud_and_leaves_no_finalizer_or_lease(
    crds: Cluster, ns: str, simulator: Simulator, operator: Operator, api: client.ApiClient
) -> None:
    manifests = fleet(ns, 2, 2, 2)
    await asyncio.to_thread(_apply, crds, manifests)
    await asyncio.to_thread(
        wait_for, "the fleet to be Ready", lambda: _all_ready(crds, ns, len(manifests)), 180
    )
    found = await asyncio.to_thread(objects, crds, ns)
    keys = {family_key(o["metadata"]["uid"]) for o in found if o["kind"] == "LoadBalancer"}
    assert await _lock_leases(api, keys), "no lock Lease was ever made: the test proves nothing"

    deleted = await asyncio.to_thread(
        crds.kubectl, "delete", "lboperator", "--all", "-n", ns, "--timeout=180s"
    )
    assert deleted.returncode == 0, deleted.stderr
    assert await asyncio.to_thread(objects, crds, ns) == []
    stats = await asyncio.to_thread(simulator.stats)
    assert stats["objects"] == {
        "load_balancers": 0,
        "pools": 0,
        "members": 0,
        "listeners": 0,
        "health_monitors": 0,
    }
    assert stats["overlaps"] == 0
    deadline = time.monotonic() + 30
    while leftover := await _lock_leases(api, keys):
        assert time.monotonic() < deadline, f"lock Leases left behind: {leftover}"
        await asyncio.sleep(0.2)


async def _ready_tree(crds: Cluster, ns: str) -> tuple[int, str]:
    """One load balancer with a pool (and its listener and monitor), all Ready: (objects, the LB's UID)."""
    manifests = fleet(ns, 1, 1, 0)
    await asyncio.to_thread(_apply, crds, manifests)
    await asyncio.to_thread(
        wait_for, "the fleet to be Ready", lambda: _all_ready(crds, ns, len(manifests)), 120
    )
    found = await asyncio.to_thread(objects, crds, ns)
    return len(manifests), next(o["metadata"]["uid"] for o in found if o["kind"] == "LoadBalancer")


async def _tag_the_pool(crds: Cluster, ns: str) -> None:
    patch = '{"spec": {"tags": {"t": "1"}}}'
    patched = await asyncio.to_thread(
        crds.kubectl, "patch", "lbpool", "lb0-pool0", "-n", ns, "--type=merge", "-p", patch
    )
    assert patched.returncode == 0, patched.stderr


async def _pool_untouched(simulator: Simulator) -> None:
    pools = await asyncio.to_thread(simulator.list, "load-balancers/pools")
    assert pools[0]["tags"].get("t") is None, "the pool changed while another held its LB's lock"


async def _until_pool_tagged(simulator: Simulator, what: str, seconds: float) -> None:
    tagged = lambda: simulator.list("load-balancers/pools")[0]["tags"].get("t") == "1"  # noqa: E731
    await asyncio.to_thread(wait_for, what, tagged, seconds)


async def test_a_change_that_waits_for_the_lock_past_its_bound_reports_it_and_is_retried(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path, api: client.ApiClient
) -> None:
    operator = _start(crds, simulator, logs, ns, handler_timeout=1)
    try:
        _, lb_uid = await _ready_tree(crds, ns)
        async with LeaseMutex(api, "default", "test-holder") as mutex:
            loop = asyncio.get_running_loop()
            async with mutex.hold(family_key(lb_uid), deadline=loop.time() + 10):
                await _tag_the_pool(crds, ns)

                def timed_out() -> bool:
                    synced = _conditions(crds, ns, "lbpool", "lb0-pool0").get("Synced", {})
                    return synced.get("reason") == "LockTimeout"

                await asyncio.to_thread(wait_for, "the pool's handler to time out on the lock", timed_out, 30)
                await _pool_untouched(simulator)
        await _until_pool_tagged(simulator, "the retried change to update the pool", 60)
        synced = (await asyncio.to_thread(_conditions, crds, ns, "lbpool", "lb0-pool0"))["Synced"]
        assert synced["status"] == "True"
    finally:
        operator.stop()


async def test_a_change_queued_past_its_handlers_deadline_keeps_its_place_and_is_made_once(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path, api: client.ApiClient
) -> None:
    """The handler gives up at its deadline (1 s); its change waits on for the lock (4 s) and is made."""
    log = logs / "operator-queued.log"
    operator = Operator(crds, simulator, log, ns, handler_timeout=1)
    try:
        count, lb_uid = await _ready_tree(crds, ns)
        updates_before = sum(1 for c in simulator.log() if c["kind"] == "pool" and c["op"] == "update")
        async with LeaseMutex(api, "default", "test-holder") as mutex:
            loop = asyncio.get_running_loop()
            async with mutex.hold(family_key(lb_uid), deadline=loop.time() + 10):
                await _tag_the_pool(crds, ns)
                await asyncio.sleep(4)  # the scenario: held past the handler's deadline, not the change's
                await _pool_untouched(simulator)
        await _until_pool_tagged(simulator, "the queued change to update the pool", 30)
        await asyncio.to_thread(
            wait_for, "the pool to be Ready again", lambda: _all_ready(crds, ns, count), 30
        )
        updates = sum(1 for c in simulator.log() if c["kind"] == "pool" and c["op"] == "update")
        assert updates - updates_before == 1
        events = await asyncio.to_thread(
            crds.kubectl,
            "get",
            "events",
            "-n",
            ns,
            "--field-selector=involvedObject.name=lb0-pool0",
            "-o",
            "json",
        )
        reasons = {e["reason"] for e in json.loads(events.stdout)["items"]}
        assert "LockTimeout" not in reasons, "the change gave up its place in the queue"
        assert "its change is still under way" in log.read_text(), "the handler did not end at its deadline"
        synced = (await asyncio.to_thread(_conditions, crds, ns, "lbpool", "lb0-pool0"))["Synced"]
        assert synced["status"] == "True"
        pool = next(o for o in await asyncio.to_thread(objects, crds, ns) if o["kind"] == "LoadBalancerPool")
        assert "lboperator.dev/reconcile" not in pool["metadata"].get("annotations", {}), (
            "Kopf's retry record"
        )
    finally:
        operator.stop()


def test_a_spec_the_cloud_rejects_is_reported_not_retried_hot(
    crds: Cluster, ns: str, simulator: Simulator, operator: Operator
) -> None:
    manifests = fleet(ns, 1, 1, 0)
    duplicate = {**manifests[2], "metadata": {"name": "same-port", "namespace": ns}}
    assert duplicate["kind"] == "LoadBalancerListener"
    _apply(crds, manifests)
    wait_for("the fleet to be Ready", lambda: _all_ready(crds, ns, len(manifests)), 120)
    _apply(crds, [duplicate])

    def rejected() -> bool:
        return (
            _conditions(crds, ns, "lblistener", "same-port").get("Ready", {}).get("reason") == "CloudRejected"
        )

    wait_for("the listener to be marked CloudRejected", rejected, 60)
    ready = _conditions(crds, ns, "lblistener", "same-port")["Ready"]
    assert ready["status"] == "False"
    assert "protocol_port" in ready["message"]

    def rejections() -> int:
        events = crds.kubectl(
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "reason=CloudRejected,involvedObject.name=same-port",
            "-o",
            "json",
        )
        return len(json.loads(events.stdout)["items"])

    wait_for("the CloudRejected Event", lambda: rejections() == 1, 30)
    # The retry window: a transient failure is retried after at most LBOP_RETRY_DELAY_MAX (5 s here), so
    # by then any retry loop has sent its listener again. The operator keeps working meanwhile (a change of
    # the load balancer gets through), so a retry could not have been held up behind a stuck handler.
    window_ends = time.monotonic() + 5 + 1
    patched = crds.kubectl(
        "patch", "lb", "lb0", "-n", ns, "--type=merge", "-p", '{"spec": {"tags": {"b": "1"}}}'
    )
    assert patched.returncode == 0, patched.stderr
    wait_for("the LB update", lambda: simulator.list("load-balancers")[0]["tags"].get("b") == "1", 60)
    wait_for("the retry window to pass", lambda: time.monotonic() >= window_ends, 10)
    assert rejections() == 1, "the operator retried a spec the cloud rejected"


async def test_two_replicas_reconciling_one_new_load_balancer_at_once_create_it_once(
    crds: Cluster, ns: str, simulator: Simulator, api: client.ApiClient
) -> None:
    manifest = next(m for m in fleet(ns, 1, 0, 0) if m["kind"] == "LoadBalancer")
    await asyncio.to_thread(_apply, crds, [manifest])
    got = await asyncio.to_thread(
        crds.kubectl, "get", "lb", manifest["metadata"]["name"], "-n", ns, "-o", "json"
    )
    body = json.loads(got.stdout)
    # The race is made, not hoped for: the test holds the tree's lock until both workers wait for it
    # (each says so from the lock's wait hook), then lets go: both contend for one free lock at once.
    async with LeaseMutex(api, "default", "starting-gate") as gate:
        held = await gate.try_hold(family_key(body["metadata"]["uid"]))
        assert held is not None
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(RECONCILE_WORKER),
                json.dumps(config),
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, **simulator.env()},
            )
            for config in (
                {
                    "kubeconfig": str(crds.kubeconfig),
                    "namespace": "default",
                    "identity": f"replica-{n}",
                    "object": body,
                }
                for n in range(2)
            )
        ]
        async with asyncio.timeout(60):
            first_lines = [await worker.stdout.readline() for worker in workers if worker.stdout]
        assert [json.loads(line).get("waiting") for line in first_lines] == [gate.identity] * 2, first_lines
        async with held:
            pass  # released: the starting gate opens
    async with asyncio.timeout(120):
        outputs = [(await worker.communicate())[0].decode() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    ended_with = {json.loads(output.splitlines()[-1])["uuid"] for output in outputs}
    made = [
        lb
        for lb in await asyncio.to_thread(simulator.list, "load-balancers")
        if lb["tags"].get("lboperator-uid") == body["metadata"]["uid"]
    ]
    assert len(made) == 1, f"one LoadBalancer object, {len(made)} cloud load balancers"
    assert ended_with == {made[0]["uuid"]}


def test_the_udp_example_becomes_ready_dns_on_53_over_udp_and_tcp(
    crds: Cluster, ns: str, simulator: Simulator, operator: Operator
) -> None:
    """``examples/udp`` as shipped; on Octavia its load balancer names a VIP subnet instead of a zone."""
    example = REPO_ROOT / "examples" / "udp"
    if ON_OCTAVIA:
        manifests = list(yaml.safe_load_all((example / "dns.yaml").read_text()))
        for manifest in manifests:
            if manifest["kind"] == "LoadBalancer":
                manifest["spec"] = {"vipAddresses": [{"subnetUUID": OCTAVIA_SUBNET}]}
        applied = crds.kubectl("apply", "-n", ns, "-f", "-", input=to_yaml(manifests))
    else:
        applied = crds.kubectl("apply", "-n", ns, "-f", str(example))
    assert applied.returncode == 0, applied.stderr
    wait_for("the UDP example to be Ready", lambda: _all_ready(crds, ns, 8), 120)
    listeners = simulator.list("load-balancers/listeners")
    ports = sorted((item["protocol"], item["protocol_port"]) for item in listeners)
    assert ports == [("tcp", 53), ("udp", 53)]
    pools = {item["name"]: item["protocol"] for item in simulator.list("load-balancers/pools")}
    assert pools == {f"{ns}-dns-udp": "udp", f"{ns}-dns-tcp": "tcp"}
    (monitor,) = simulator.list("load-balancers/health-monitors")
    assert (monitor["type"], monitor["delay_s"], monitor["timeout_s"]) == ("udp-connect", 3, 2)


def test_a_udp_listener_on_a_tcp_pool_is_reported_as_the_clouds_rejection(
    crds: Cluster, ns: str, simulator: Simulator, operator: Operator
) -> None:
    tcp_fleet = fleet(ns, 1, 1, 0)  # a tcp pool with a tcp listener and a monitor
    wrong = {
        "apiVersion": "lboperator.dev/v1alpha1",
        "kind": "LoadBalancerListener",
        "metadata": {"name": "dns", "namespace": ns},
        "spec": {"poolRef": {"name": "lb0-pool0"}, "protocol": "udp", "protocolPort": 53},
    }
    _apply(crds, [*tcp_fleet, wrong])

    def rejected() -> bool:
        found = {o["metadata"]["name"]: o for o in objects(crds, ns)}
        conditions = found.get("dns", {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c.get("reason") == "CloudRejected" for c in conditions)

    wait_for("the udp listener to be rejected", rejected, 120)
    dns = next(o for o in objects(crds, ns) if o["metadata"]["name"] == "dns")
    ready = next(c for c in dns["status"]["conditions"] if c["type"] == "Ready")
    said = (
        "is invalid while the listener protocol"  # Octavia's own words
        if ON_OCTAVIA
        else '"udp" listener cannot forward to a "tcp" pool'
    )
    assert said in ready["message"], ready["message"]
