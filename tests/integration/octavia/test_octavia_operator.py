"""The operator against Octavia's own API server: the example tree becomes Ready with not one 409, and
without locks Octavia's own 409s show why they are needed.

Octavia answers a change under a load balancer that is PENDING_* with 409
"… is immutable"; its count (``stats()["conflicts"]``) is the overlap oracle,
as the simulator's overlap count is for cloudscale's API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lb_operator.testing import Cluster
from lb_operator.testing.cluster import REPO_ROOT
from lb_operator.testing.fleet import fleet, to_yaml
from lb_operator.testing.octavia import SUBNET, OctaviaProcess
from lb_operator.testing.processes import OperatorProcess, custom_objects, is_ready, wait_for

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "examples" / "octavia"
QUICK = {"retry_delay": 0.5, "retry_delay_max": 5, "ready_poll": 0.2}


@pytest.fixture
def ns(crds: Cluster) -> str:
    name = f"oct-{uuid.uuid4().hex[:6]}"
    assert crds.kubectl("create", "namespace", name).returncode == 0
    return name


@pytest.fixture
def fresh_octavia(logs: Path) -> Iterator[OctaviaProcess]:
    """An Octavia of the test's own: its 409 count is this test's alone."""
    server = OctaviaProcess(logs / "octavia.log", latency=0.05, lb_ready_delay=0.5)
    yield server
    server.stop()


def _all_ready(cluster: Cluster, namespace: str, count: int) -> bool:
    found = custom_objects(cluster, namespace)
    return len(found) == count and all(is_ready(o) for o in found)


def _live(octavia: OctaviaProcess) -> dict[str, Any]:
    objects: dict[str, Any] = octavia.stats()["objects"]
    return objects


def test_the_example_tree_becomes_ready_on_octavia_without_one_conflict_and_leaves_nothing_behind(
    crds: Cluster, ns: str, fresh_octavia: OctaviaProcess, logs: Path
) -> None:
    operator = OperatorProcess(
        crds, fresh_octavia, logs / "operator.log", identity="operator-0", watch_namespaces=ns, **QUICK
    )
    try:
        applied = crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
        assert applied.returncode == 0, applied.stderr
        wait_for("the example tree to be Ready", lambda: _all_ready(crds, ns, 11), 120, 0.5)
        assert _live(fresh_octavia) == {
            "load_balancers": 1,
            "pools": 2,
            "members": 4,
            "listeners": 2,
            "health_monitors": 2,
        }
        found = {o["metadata"]["name"]: o for o in custom_objects(crds, ns)}
        lb_uuid = found["edge"]["status"]["uuid"]
        listed = fresh_octavia.request("GET", f"loadbalancers/{lb_uuid}")["loadbalancer"]
        assert f"lboperator-uid={found['edge']['metadata']['uid']}" in listed["tags"]
        assert listed["provisioning_status"] == "ACTIVE"
        stats = fresh_octavia.stats()
        assert stats["mutations"] >= 11, "the tree was not made through Octavia's API"
        assert stats["conflicts"] == 0, f"Octavia answered 409 {stats['conflicts']} times with locks on"

        deleted = crds.kubectl("delete", "-n", ns, "-f", str(EXAMPLE), "--wait=true", timeout=120)
        assert deleted.returncode == 0, deleted.stderr
        wait_for("Octavia to hold nothing", lambda: not any(_live(fresh_octavia).values()), 60, 0.2)
        assert fresh_octavia.stats()["conflicts"] == 0
    finally:
        operator.stop()


def test_without_locks_octavia_refuses_the_overlapping_changes(
    crds: Cluster, ns: str, fresh_octavia: OctaviaProcess, logs: Path
) -> None:
    manifests = fleet(ns, 2, 2, 3, zone=None, vip_subnet=SUBNET)
    operator = OperatorProcess(
        crds,
        fresh_octavia,
        logs / "operator.log",
        identity="operator-0",
        watch_namespaces=ns,
        locking="false",
        sharding="false",
        **QUICK,
    )
    try:
        applied = crds.kubectl("apply", "-f", "-", input=to_yaml(manifests), timeout=120)
        assert applied.returncode == 0, applied.stderr
        wait_for("the fleet to be Ready", lambda: _all_ready(crds, ns, len(manifests)), 180, 0.5)
        conflicts = fresh_octavia.stats()["conflicts"]
        print(f"without locks: {conflicts} answers 409 from Octavia for {len(manifests)} objects")
        assert conflicts > 0, "no 409 without locks: the test shows nothing about the locks"
    finally:
        operator.stop()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def test_what_octavia_cannot_do_is_a_condition_and_an_event_and_nothing_is_made(
    crds: Cluster, ns: str, fresh_octavia: OctaviaProcess, logs: Path
) -> None:
    public = {
        "apiVersion": "lboperator.dev/v1alpha1",
        "kind": "LoadBalancer",
        "metadata": {"name": "public", "namespace": ns},
        "spec": {"zone": "lpg1"},  # cloudscale's shape: no VIP subnet, which Octavia needs
    }
    operator = OperatorProcess(
        crds, fresh_octavia, logs / "operator.log", identity="operator-0", watch_namespaces=ns, **QUICK
    )
    try:
        applied = crds.kubectl("apply", "-f", "-", input=to_yaml([public]))
        assert applied.returncode == 0, applied.stderr

        def rejected() -> bool:
            found = custom_objects(crds, ns)
            return bool(found) and _condition(found[0], "Ready").get("reason") == "CloudRejected"

        wait_for("the load balancer to be rejected", rejected, 60, 0.3)
        ready = _condition(custom_objects(crds, ns)[0], "Ready")
        assert "exactly one VIP" in ready["message"]
        assert "vipAddresses" in ready["message"], "the message does not say what to do"
        events = crds.kubectl("get", "events", "-n", ns, "-o", "json")
        reasons = {e["reason"] for e in json.loads(events.stdout)["items"]}
        assert "CloudRejected" in reasons
        assert fresh_octavia.stats()["mutations"] == 0, "a request was sent for what Octavia cannot do"
    finally:
        operator.stop()
