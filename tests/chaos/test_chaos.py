"""Chaos: replicas SIGKILLed every few seconds and replaced, under a fleet applied, updated and deleted.

Real processes on the real API server and the simulator. What must hold
whatever the kills hit: every object Ready at its latest generation, then
gone; zero overlapping changes at the cloud; exactly one cloud load balancer
per LoadBalancer object while they exist and nothing after; no lock held,
no finalizer left, no object unassigned. Every phase must have seen a kill:
a phase that ended before the first one proves nothing, so it waits for one.

``make test`` runs it over 10 load balancers (190 objects); ``LBOP_CHAOS=long``
(``make chaos``) over 20 (380).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lb_operator.mutex import KEY_ANNOTATION, LOCK_LABEL
from lb_operator.sharding import SHARD_LABEL
from lb_operator.testing import Cluster
from lb_operator.testing.fleet import fleet
from lb_operator.testing.processes import wait_for
from lb_operator.testing.replicas import ReplicaFleet

pytestmark = pytest.mark.integration

LEASE = 5  # seconds: member and lock leases; a kill costs about this much
LBS = 20 if os.environ.get("LBOP_CHAOS") == "long" else 10
POOLS, MEMBERS = 3, 3  # LBS x (1 + 3 x (1 + 3 + 2)): 380 or 190 objects
TAKEOVER = 3 * LEASE + 15
"""Seconds within which a killed replica's objects have a live owner again: its member lease must expire
(one lease), the sharder may be the one killed (one more), and a pass over the whole fleet takes seconds
on this shared machine. A sharder that waited for anything else would miss it by minutes."""


class Chaos(threading.Thread):
    """Every 5-10 s (the first within 1-3 s): SIGKILL a random live replica and start a new one."""

    def __init__(self, replicas: ReplicaFleet, seed: int, names: Iterator[int]) -> None:
        super().__init__(name="chaos", daemon=True)
        self.replicas = replicas
        self.random = random.Random(seed)
        self.names = names
        self.kills = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            pause = self.random.uniform(1, 3)
            while not self.halt.wait(pause):
                pause = self.random.uniform(5, 10)
                victim = self.random.choice(sorted(self.replicas.alive()))
                self.replicas.kill(victim)
                self.kills += 1
                self.replicas.start(f"chaos-{next(self.names)}")
        except BaseException as error:  # surfaced by stop(): a dead chaos thread would prove nothing
            self.error = error

    def stop(self) -> None:
        """End the chaos once it has killed at least once."""
        wait_for("a first kill", lambda: self.kills > 0 or self.error is not None, 30)
        self.halt.set()
        self.join(timeout=30)
        assert self.error is None, f"the chaos thread failed: {self.error!r}"
        assert self.kills > 0


def _cloud_lbs_per_object(replicas: ReplicaFleet) -> Counter[str]:
    return Counter(lb["tags"].get("lboperator-uid", "?") for lb in replicas.simulator.list("load-balancers"))


def _held_lock_leases(cluster: Cluster, namespace: str) -> list[str]:
    """Lock Leases (not members, not the sharder) still held and not expired."""
    listed = cluster.kubectl("get", "leases", "-n", namespace, "-l", LOCK_LABEL, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    now = datetime.datetime.now(datetime.UTC)
    held = []
    for lease in json.loads(listed.stdout)["items"]:
        key = (lease["metadata"].get("annotations") or {}).get(KEY_ANNOTATION, "")
        spec = lease["spec"]
        if key.startswith("member/") or key == "sharder" or not spec.get("holderIdentity"):
            continue
        renewed = datetime.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
        if (now - renewed).total_seconds() < spec["leaseDurationSeconds"]:
            held.append(f"{key} by {spec['holderIdentity']}")
    return held


def _unassigned(replicas: ReplicaFleet) -> list[str]:
    alive = replicas.alive()
    return [
        o["metadata"]["name"]
        for o in replicas.objects()
        if (o["metadata"].get("labels") or {}).get(SHARD_LABEL) not in alive
    ]


@pytest.mark.timeout(900)
def test_a_fleet_survives_replicas_killed_every_few_seconds(crds: Cluster, logs: Path) -> None:
    replicas = ReplicaFleet(
        crds, logs, simulator={"latency": 0.05, "lb_ready_delay": 0.5}, lease_duration=LEASE, shutdown_grace=1
    )
    seed = int(time.time())
    print(f"chaos seed {seed}")
    names = itertools.count()
    chaos = Chaos(replicas, seed, names)
    try:
        for _ in range(3):
            replicas.start(f"chaos-{next(names)}")
        manifests = fleet(replicas.namespace, LBS, POOLS, MEMBERS)
        assert len(manifests) == LBS * (1 + POOLS * (1 + MEMBERS + 2))
        started = time.monotonic()
        chaos.start()

        replicas.apply(manifests)
        wait_for("the fleet to be Ready", lambda: replicas.all_ready(len(manifests)), 600, interval=1)
        created_after = time.monotonic() - started
        lbs = _cloud_lbs_per_object(replicas)
        assert len(lbs) == LBS, f"cloud load balancers per object: {lbs}"
        assert set(lbs.values()) == {1}, f"cloud load balancers per object: {lbs}"

        updated = [
            {**m, "spec": {**m["spec"], "tags": {**(m["spec"].get("tags") or {}), "round": "2"}}}
            for m in manifests[::3]
        ]
        update_started = time.monotonic()
        replicas.apply(updated)
        wait_for("the update to be Ready", lambda: replicas.all_ready(len(manifests)), 600, interval=1)
        updated_after = time.monotonic() - update_started
        chaos.stop()  # a pause: every object must come to rest with a live owner
        kills = chaos.kills
        wait_for("every object owned by a live replica", lambda: not _unassigned(replicas), TAKEOVER)
        lbs = _cloud_lbs_per_object(replicas)
        assert len(lbs) == LBS, f"cloud load balancers per object: {lbs}"
        assert set(lbs.values()) == {1}, f"cloud load balancers per object: {lbs}"
        tagged = [lb for lb in replicas.simulator.list("load-balancers") if lb["tags"].get("round") == "2"]
        assert len(tagged) == len([m for m in updated if m["kind"] == "LoadBalancer"])

        chaos = Chaos(replicas, seed + 1, names)
        chaos.start()
        delete_started = time.monotonic()
        deleted = crds.kubectl("delete", "lboperator", "--all", "-n", replicas.namespace, "--wait=false")
        assert deleted.returncode == 0, deleted.stderr
        wait_for("every object to be gone", lambda: replicas.objects() == [], 600, interval=1)
        deleted_after = time.monotonic() - delete_started
        chaos.stop()
        kills += chaos.kills

        stats = replicas.simulator.stats()
        assert stats["objects"] == dict.fromkeys(stats["objects"], 0), (
            f"left in the cloud: {stats['objects']}"
        )
        assert stats["overlaps"] == 0
        wait_for("no lock to be held", lambda: not _held_lock_leases(crds, replicas.namespace), LEASE + 5)
        print(
            f"chaos: {len(manifests)} objects, {kills} kills survived; Ready {created_after:.0f}s, "
            f"update Ready {updated_after:.0f}s, all deleted {deleted_after:.0f}s; overlaps 0; "
            f"cloud load balancers left 0"
        )
        print(
            f"RESULT kills={kills} objects={len(manifests)} ready_s={created_after:.0f} "
            f"update_ready_s={updated_after:.0f} deleted_s={deleted_after:.0f} overlaps={stats['overlaps']} "
            f"left_in_cloud={sum(stats['objects'].values())}"
        )
    finally:
        if chaos.is_alive():
            chaos.halt.set()
            chaos.join(timeout=30)
        replicas.stop()
