"""What months in production need: drift set back, honest errors, quiet Events, prompt children, deadlines."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes.aio import client
from operator_harness import (
    ON_OCTAVIA,
    Operator,
    Simulator,
    apply,
    behind,
    objects,
    ready_at_generation,
    simulator_only,
    wait_for,
)

from lb_operator.mutex import KEY_ANNOTATION, LOCK_LABEL
from lb_operator.reconcile.engine import family_key
from lb_operator.testing import Cluster
from lb_operator.testing.fleet import fleet
from lb_operator.testing.processes import SIMULATOR_TOKEN, SimulatorProcess


def _events(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = cluster.kubectl("get", "events", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def _by_name(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects(cluster, namespace)}


def test_drift_in_the_cloud_is_set_back_and_reported(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path
) -> None:
    operator = Operator(crds, simulator, logs / "operator.log", ns, resync_interval=1)
    try:
        manifests = fleet(ns, 1, 1, 2)
        apply(crds, manifests)
        wait_for("the fleet to be Ready", lambda: ready_at_generation(crds, ns, len(manifests)), 120)
        before = _by_name(crds, ns)

        # 1. A member edited in the console.
        member = before["lb0-pool0-m0"]["status"]
        path = f"load-balancers/pools/{member['poolUUID']}/members/{member['uuid']}"
        behind(simulator, "PATCH", path, {"name": "edited", "enabled": False})
        edited = time.monotonic()
        wait_for(
            "the member to be set back",
            lambda: (lambda m: m["name"] == f"{ns}-lb0-pool0-m0" and m["enabled"])(
                behind(simulator, "GET", path)
            ),
            30,
        )
        print(f"drift detected and corrected after {time.monotonic() - edited:.1f}s (resync interval 1s)")
        reasons = {(e["involvedObject"]["name"], e["reason"]) for e in _events(crds, ns)}
        assert ("lb0-pool0-m0", "DriftCorrected") in reasons

        # 2. The whole load balancer deleted in the console: it and its tree come back, under the new one.
        old_lb = before["lb0"]["status"]["uuid"]
        behind(simulator, "DELETE", f"load-balancers/{old_lb}")

        def tree_rebuilt() -> bool:
            now = _by_name(crds, ns)
            lb = now["lb0"]["status"].get("uuid")
            if lb in (None, old_lb) or not ready_at_generation(crds, ns, len(manifests)):
                return False
            children = [o for name, o in now.items() if name != "lb0"]
            return all(o["status"].get("loadBalancerUUID") == lb for o in children)

        wait_for("the tree to be re-created under a new load balancer", tree_rebuilt, 90)
        assert simulator.stats()["objects"] == {
            "load_balancers": 1,
            "pools": 1,
            "members": 2,
            "listeners": 1,
            "health_monitors": 1,
        }
        assert simulator.stats()["overlaps"] == 0

        # 3. Observed fields are refreshed: members made before their monitor come to see it.
        def monitored() -> bool:
            found = [
                o["status"].get("monitorStatus") for o in objects(crds, ns) if o["kind"].endswith("Member")
            ]
            return found == ["up", "up"]

        wait_for("every member's monitorStatus to be refreshed to up", monitored, 30)
    finally:
        operator.stop()


@simulator_only
def test_a_refused_token_is_reported_and_the_objects_recover_once_it_is_replaced(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path, tmp_path: Path
) -> None:
    """A token file is cloudscale's credential; Octavia's (Keystone) are tested in
    ``tests/integration/octavia/test_octavia_keystone.py``."""
    token_file = tmp_path / "token"
    token_file.write_text("a-revoked-token")
    operator = Operator(crds, simulator, logs / "operator.log", ns, cloud_token_file=token_file)
    try:
        manifests = fleet(ns, 1, 1, 1)
        apply(crds, manifests)

        def lb_unauthorized() -> bool:
            conditions = _by_name(crds, ns)["lb0"].get("status", {}).get("conditions", [])
            return any(c["type"] == "Synced" and c["reason"] == "Unauthorized" for c in conditions)

        wait_for("the load balancer to report Unauthorized", lb_unauthorized, 60)
        assert "a-revoked-token" not in json.dumps(_events(crds, ns))
        replacement = tmp_path / "token.new"
        replacement.write_text(SIMULATOR_TOKEN)
        replacement.replace(token_file)  # as the kubelet rotates a mounted Secret
        wait_for(
            "the fleet to be Ready with the new token",
            lambda: ready_at_generation(crds, ns, len(manifests)),
            120,
        )
    finally:
        operator.stop()
    assert "a-revoked-token" not in (logs / "operator.log").read_text()


def test_children_start_when_their_parent_is_ready_not_at_their_next_retry(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path
) -> None:
    # Retries and readiness polls 5 minutes apart: only a wake-up can make this fleet Ready in time.
    slow = {"retry_delay": 300, "retry_delay_max": 300, "ready_poll": 300}
    operator = Operator(crds, simulator, logs / "operator.log", ns, **slow)
    try:
        manifests = fleet(ns, 1, 2, 2)
        apply(crds, manifests[1:])  # children first: they must wait
        wait_for(
            "the pools to wait for their load balancer",
            lambda: (
                all(
                    any(
                        c.get("reason") == "ParentNotReady" for c in o.get("status", {}).get("conditions", [])
                    )
                    for o in objects(crds, ns)
                    if o["kind"] == "LoadBalancerPool"
                )
                and len(objects(crds, ns)) == len(manifests) - 1
            ),
            60,
        )
        apply(crds, manifests[:1])
        wait_for("the fleet to be Ready", lambda: ready_at_generation(crds, ns, len(manifests)), 120)
    finally:
        operator.stop()


def test_normal_waiting_is_quiet_in_events_and_logs(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path
) -> None:
    operator = Operator(crds, simulator, logs / "operator.log", ns)
    try:
        manifests = fleet(ns, 2, 2, 2)
        apply(crds, manifests)  # children race their parents: plenty of waiting
        wait_for("the fleet to be Ready", lambda: ready_at_generation(crds, ns, len(manifests)), 180)
    finally:
        operator.stop()
    events = _events(crds, ns)
    per_object = Counter(e["involvedObject"]["name"] for e in events)
    print(f"{len(events)} Events for {len(manifests)} objects; most on one: {per_object.most_common(3)}")
    print(Counter(e["reason"] for e in events))
    warnings = [
        (e["involvedObject"]["name"], e["reason"], e["message"]) for e in events if e["type"] != "Normal"
    ]
    assert warnings == [], "a clean run gives a person nothing to look at"
    repeated = [
        (obj, reason, n)
        for (obj, reason), n in Counter(
            (e["involvedObject"]["name"], e["reason"]) for e in events if e["reason"] != "WaitingForLock"
        ).items()
        if n > 1
    ]
    assert repeated == [], "no Event twice for one cause"
    assert all(e.get("count", 1) == 1 for e in events), "no Event repeated (Kopf/Kubernetes count them)"
    errors = [line for line in (logs / "operator.log").read_text().splitlines() if " ERROR " in line]
    assert errors == [], errors[:5]


def _conditions(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    found = _by_name(cluster, namespace).get(name, {})
    return {c["type"]: c for c in found.get("status", {}).get("conditions", [])}


async def _holder(api: client.ApiClient, key: str) -> str | None:
    """The holder of the lock Lease of ``key`` (operator tests keep their locks in `default`); None: free.

    Fails when there is no such Lease: "free" would then only mean that it was never taken.
    """
    leases = await client.CoordinationV1Api(api).list_namespaced_lease("default", label_selector=LOCK_LABEL)
    for lease in leases.items:
        if (lease.metadata.annotations or {}).get(KEY_ANNOTATION) == key:
            return lease.spec.holder_identity or None
    raise AssertionError(f"no lock Lease of {key} was ever made: the release check would prove nothing")


async def test_a_hung_cloud_request_ends_with_the_attempt_and_releases_the_lock(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path, api: client.ApiClient
) -> None:
    # The retry comes 5 s after the attempt ended (not the harness's 0.5 s): until then the lock must be
    # free. With 0.5 s the retry had, on a loaded machine, taken the lock again before the test looked.
    operator = Operator(crds, simulator, logs / "operator.log", ns, handler_timeout=3, retry_delay=5)
    try:
        manifests = fleet(ns, 1, 0, 0)
        await asyncio.to_thread(apply, crds, manifests)
        await asyncio.to_thread(wait_for, "the LB to be Ready", lambda: ready_at_generation(crds, ns, 1), 60)
        # Every update now hangs for two minutes; the client's own bound is 30 s.
        update = "PUT" if ON_OCTAVIA else "PATCH"
        await asyncio.to_thread(simulator.set_faults, fault_hang=1.0, hang_seconds=120, methods=[update])
        patched = await asyncio.to_thread(
            crds.kubectl, "patch", "lb", "lb0", "-n", ns, "--type=merge", "-p", '{"spec":{"tags":{"v":"2"}}}'
        )
        assert patched.returncode == 0, patched.stderr

        def out_of_time() -> bool:
            return _conditions(crds, ns, "lb0").get("Synced", {}).get("reason") == "DeadlineExceeded"

        await asyncio.to_thread(wait_for, "the attempt to end with DeadlineExceeded", out_of_time, 20)
        lb_uid = _by_name(crds, ns)["lb0"]["metadata"]["uid"]
        assert await _holder(api, family_key(lb_uid)) is None, "the lock outlived the attempt"

        await asyncio.to_thread(simulator.set_faults, fault_hang=0.0)
        tagged = lambda: simulator.list("load-balancers")[0]["tags"].get("v") == "2"  # noqa: E731
        await asyncio.to_thread(wait_for, "the change to reach the cloud once it answers", tagged, 60)
    finally:
        operator.stop()


@simulator_only
def test_a_change_whose_answer_never_came_keeps_the_lock_until_the_cloud_has_applied_it(
    crds: Cluster, ns: str, logs: Path
) -> None:
    """Octavia answers a change at once and applies it later (PENDING_*), so its answers come; on
    Octavia, answers that never came are the fault suite's ``fault_lost``."""
    # Every change takes the cloud 1.5 s; the client gives up after 0.5 s. The cloud applies it anyway.
    slow = SimulatorProcess(logs / "slow-simulator.log", latency=1.5, lb_ready_delay=0.5)
    operator = Operator(crds, slow, logs / "operator.log", ns, cloud_request_timeout=0.5)
    try:
        manifests = fleet(ns, 1, 1, 2)
        apply(crds, manifests)
        wait_for("the fleet to be Ready", lambda: ready_at_generation(crds, ns, len(manifests)), 240)
        stats = slow.stats()
        assert stats["overlaps"] == 0, "a change was sent while the cloud still applied one it never answered"
        assert stats["objects"]["load_balancers"] == 1, "an unanswered creation was sent twice"
    finally:
        operator.stop()
        slow.stop()
