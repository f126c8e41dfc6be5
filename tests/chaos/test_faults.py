"""Chaos beyond SIGKILL: replicas frozen, cut off and blind, the API server restarted, the cloud failing.

Real processes on the real API server and the simulator (or, with
``LBOP_TEST_BACKEND=octavia``, Octavia's own API server, the same faults
injected in front of it by ``tools/octavia/serve.py``), in one run:

1. **freeze** — the test holds the locks of the victim's trees, sends a wave
   of spec changes to its objects (its handlers queue for the locks), then
   SIGSTOPs it past its member lease and lets the locks go. The others take
   its objects over and apply a second wave; then the victim resumes, its
   handlers still holding the first wave's specs;
2. **partition** — one replica reaches the API server through toxiproxy,
   which black-holes its connections (open, silent) for longer than its
   member lease while waves of changes arrive; its ``/healthz`` must fail,
   and recover when the connections heal;
3. **API-server restart** in the middle of a wave;
4. **delete-all while a replica is frozen**.

Cloud faults all along: 500s, and answers lost after the cloud applied the
change (``fault_lost``), on every mutation. Drift checks are off (an hour):
a lost update must stay visible to the checker, not be repaired by the next
check.

The checker (``lb_operator.testing.oracle``) compares, after each phase,
each object's latest spec with what the cloud holds, field by field; counts
cloud objects without their Kubernetes object and objects without their
cloud twin; objects not Ready at their generation; objects two replicas
wrote at once (the handler journal); overlapping changes at the cloud. At
the end nothing may be left in the cloud and no lock held.

``make test`` runs it small; ``LBOP_CHAOS=long`` (``make chaos``) over 380
objects with two rounds, and both print a ``RESULT`` line.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import client

from lb_operator.mutex import LeaseMutex
from lb_operator.reconcile.engine import family_key
from lb_operator.sharding import SHARD_LABEL
from lb_operator.testing import Cluster
from lb_operator.testing.controlplane import free_port
from lb_operator.testing.fleet import fleet
from lb_operator.testing.oracle import Oracle, acted_at_once, cloud_objects, regressions
from lb_operator.testing.processes import wait_for
from lb_operator.testing.replicas import ReplicaFleet
from lb_operator.testing.toxiproxy import Toxiproxy

pytestmark = pytest.mark.integration

LEASE = 5  # seconds: member and lock leases
CUT = "cut-off"  # the replica behind toxiproxy
CLOUD_FAULTS = {"fault_500": 0.03, "fault_lost": 0.03, "methods": ["POST", "PATCH", "DELETE"]}


@dataclass(frozen=True)
class Scale:
    load_balancers: int
    pools: int
    members: int
    rounds: int


SHORT = Scale(4, 2, 2, 1)  # 4 x (1 + 2 x (1 + 2 + 2)) = 44 objects
LONG = Scale(20, 3, 3, 2)  # 20 x (1 + 3 x (1 + 3 + 2)) = 380 objects


@dataclass
class Tally:
    """What was done to the fleet, and what the checker found after each phase."""

    freezes: int = 0
    partitions: int = 0
    restarts: int = 0
    lost_updates: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stranded: list[str] = field(default_factory=list)
    unhealthy_missed: int = 0

    def result(self, cloud_faults: dict[str, int], overlaps: int, at_once: list[str]) -> str:
        faults = self.freezes + self.partitions + self.restarts + sum(cloud_faults.values())
        return (
            f"RESULT faults={faults} freezes={self.freezes} partitions={self.partitions} "
            f"restarts={self.restarts} cloud_500={cloud_faults.get('500', 0)} "
            f"cloud_lost={cloud_faults.get('lost', 0)} lost_updates={len(self.lost_updates)} "
            f"leaked={len(self.leaked)} missing={len(self.missing)} stranded={len(self.stranded)} "
            f"acted_at_once={len(at_once)} overlaps={overlaps}"
        )


class Chaos:
    """The fleet, its replicas, the proxy, and the latest manifests the test applied."""

    def __init__(self, cluster: Cluster, logs: Path, scale: Scale) -> None:
        self.cluster, self.logs, self.scale = cluster, logs, scale
        self.replicas = ReplicaFleet(
            cluster,
            logs,
            simulator={"latency": 0.05, "lb_ready_delay": 0.5},
            lease_duration=LEASE,
            shutdown_grace=1,
            resync_interval=3600,
            nudge_interval=5,
            cloud_request_timeout=5,
        )
        self.proxy = Toxiproxy(cluster, logs / "toxiproxy.log")
        self.health_port = free_port()
        self.tally = Tally()
        self.manifests = {self._key(m): m for m in fleet(self.replicas.namespace, *self._shape())}
        self.waves = 0

    def _shape(self) -> tuple[int, int, int]:
        return self.scale.load_balancers, self.scale.pools, self.scale.members

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    def start(self) -> None:
        for name in ("steady-0", "steady-1"):
            self.replicas.start(name)
        self.replicas.start(CUT, kubeconfig=self.proxy.kubeconfig, health_port=self.health_port)
        self.replicas.simulator.set_faults(**CLOUD_FAULTS)
        self.replicas.apply(list(self.manifests.values()))
        self.converge("the fleet to be Ready")

    def stop(self) -> None:
        if self.proxy.blackholed:
            self.proxy.heal()
        self.replicas.stop()
        self.proxy.stop()

    # -- waves of spec changes -------------------------------------------------------------------

    def wave(self, owned_by: str | None = None) -> list[tuple[str, str]]:
        """Change the tags of every object (of replica ``owned_by`` only, if given); the keys changed."""
        self.waves += 1
        owners = {self._key(o): (o["metadata"].get("labels") or {}).get(SHARD_LABEL) for o in self.objects()}
        changed = []
        for key, manifest in self.manifests.items():
            if owned_by is not None and owners.get(key) != owned_by:
                continue
            spec = manifest["spec"]
            self.manifests[key] = {
                **manifest,
                "spec": {**spec, "tags": {**(spec.get("tags") or {}), "wave": str(self.waves)}},
            }
            changed.append(key)
        if changed:
            self.replicas.apply([self.manifests[key] for key in changed])
        return changed

    # -- looking -----------------------------------------------------------------------------------

    def objects(self) -> list[dict[str, Any]]:
        return self.replicas.objects()

    def oracle(self) -> Oracle:
        return Oracle(self.objects(), cloud_objects(self.replicas.simulator))

    def converge(self, what: str, within: float = 300) -> None:
        """Wait until every object is Ready at its generation and the cloud matches; count what never did."""
        deadline = time.monotonic() + within
        while True:
            oracle = self.oracle()
            problems = (oracle.stranded(), oracle.lost_updates(), oracle.leaked(), oracle.missing())
            if not any(problems) and len(oracle.objects) == len(self.manifests):
                return
            if time.monotonic() > deadline:
                stranded, lost, leaked, missing = problems
                print(f"{what}: not converged in {within}s: {problems}")
                self.tally.stranded += stranded
                self.tally.lost_updates += lost
                self.tally.leaked += leaked
                self.tally.missing += missing
                return
            time.sleep(1)

    def healthy(self) -> bool:
        """Whether the cut-off replica's ``/healthz`` answers 200."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=5
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def journal_open(self, name: str) -> int:
        """Handler runs of replica ``name`` started and not ended (waiting, working, or frozen)."""
        pid = self.replicas.replicas[name].process.pid
        balance: dict[str, int] = {}
        lines = self.replicas.journal.read_text().splitlines() if self.replicas.journal.exists() else []
        for line in lines:
            entry = json.loads(line)
            if entry["pid"] == pid and entry["event"] in ("start", "end"):
                balance[entry["uid"]] = balance.get(entry["uid"], 0) + (
                    1 if entry["event"] == "start" else -1
                )
        return sum(count for count in balance.values() if count > 0)

    def busiest(self, among: Iterator[str] | list[str]) -> str:
        return max(among, key=lambda name: len(self.replicas.owned_by(name)))


async def _hold_locks(api: client.ApiClient, namespace: str, uids: list[str], release: asyncio.Event) -> None:
    """Hold the tree locks of ``uids`` (as another replica would) until ``release`` is set."""
    loop = asyncio.get_running_loop()
    async with LeaseMutex(api, namespace, "chaos-test") as mutex:
        holds = [mutex.hold(family_key(uid), deadline=loop.time() + 60) for uid in uids]
        entered = [await hold.__aenter__() for hold in holds]
        try:
            await release.wait()
        finally:
            for hold in holds:
                await hold.__aexit__(None, None, None)
        assert len(entered) == len(uids)


async def _freeze_with_handlers_waiting(chaos: Chaos, api: client.ApiClient) -> None:
    replicas = chaos.replicas
    victim = chaos.busiest(["steady-0", "steady-1"])
    trees = [o["metadata"]["uid"] for o in replicas.owned_by(victim) if o["kind"] == "LoadBalancer"]
    assert trees, f"{victim} owns no load balancer: nothing would wait"
    release = asyncio.Event()
    holding = asyncio.create_task(_hold_locks(api, replicas.namespace, trees, release))
    try:
        await asyncio.to_thread(wait_for, "the test to hold the locks", lambda: _held(replicas, trees), 30)
        changed = await asyncio.to_thread(chaos.wave, victim)
        assert changed
        await asyncio.to_thread(
            wait_for, f"{victim}'s handlers to wait for the locks", lambda: chaos.journal_open(victim) > 0, 60
        )
        replicas.freeze(victim)
        chaos.tally.freezes += 1
    finally:
        release.set()
        await holding
    frozen_at = time.monotonic()
    await asyncio.to_thread(
        wait_for, f"{victim}'s objects to move", lambda: not replicas.owned_by(victim), 4 * LEASE + 20
    )
    await asyncio.to_thread(chaos.wave)  # a newer generation, applied by the new owners
    await asyncio.to_thread(chaos.converge, "the second wave")
    assert time.monotonic() - frozen_at > LEASE, "thawed before its lease could expire: proves nothing"
    replicas.thaw(victim)
    await asyncio.to_thread(
        wait_for, f"{victim}'s stale handlers to end", lambda: chaos.journal_open(victim) == 0, 60
    )
    await asyncio.to_thread(chaos.converge, "after the freeze")


def _held(replicas: ReplicaFleet, uids: list[str]) -> bool:
    listed = replicas.cluster.kubectl("get", "leases", "-n", replicas.namespace, "-o", "json")
    holders = {
        (lease["metadata"].get("annotations") or {}).get("lboperator.dev/lock-key"): lease["spec"].get(
            "holderIdentity"
        )
        for lease in json.loads(listed.stdout)["items"]
    }
    return all(str(holders.get(family_key(uid)) or "").startswith("chaos-test/") for uid in uids)


def _partition(chaos: Chaos) -> None:
    replicas = chaos.replicas
    if not replicas.owned_by(CUT):
        chaos.wave()  # give it work whatever it owns
    chaos.wave(CUT)
    chaos.proxy.blackhole()
    chaos.tally.partitions += 1
    cut_at = time.monotonic()
    try:
        wait_for(f"{CUT}'s objects to move", lambda: not replicas.owned_by(CUT), 4 * LEASE + 20)
        chaos.wave()  # while it is cut off, everything changes again
        wait_for(f"{CUT}'s /healthz to fail", lambda: not chaos.healthy(), 4 * LEASE + 20)
        chaos.converge("during the partition")
        assert time.monotonic() - cut_at > LEASE
    finally:
        chaos.proxy.heal()
    wait_for(f"{CUT}'s /healthz to recover", chaos.healthy, 120)
    chaos.converge("after the partition")


def _restart_api_server(chaos: Chaos) -> None:
    plane = chaos.cluster.control_plane
    if plane is None:
        return  # an external cluster: not ours to restart
    chaos.wave()
    plane.stop_apiserver()
    plane.start_apiserver()
    chaos.tally.restarts += 1
    chaos.converge("after the API-server restart")


def _delete_all_while_frozen(chaos: Chaos) -> None:
    replicas = chaos.replicas
    frozen = chaos.busiest(["steady-0", "steady-1", CUT])
    replicas.freeze(frozen)
    chaos.tally.freezes += 1
    try:
        deleted = chaos.cluster.kubectl(
            "delete", "lboperator", "--all", "-n", replicas.namespace, "--wait=false"
        )
        assert deleted.returncode == 0, deleted.stderr
        wait_for("every object to be gone", lambda: chaos.objects() == [], 300, interval=1)
    finally:
        replicas.thaw(frozen)
    wait_for(f"{frozen}'s stale handlers to end", lambda: chaos.journal_open(frozen) == 0, 60)
    chaos.manifests = {}


def _locks_held(replicas: ReplicaFleet) -> list[str]:
    listed = replicas.cluster.kubectl("get", "leases", "-n", replicas.namespace, "-o", "json")
    held = []
    for lease in json.loads(listed.stdout)["items"]:
        key = (lease["metadata"].get("annotations") or {}).get("lboperator.dev/lock-key", "")
        if key.startswith("lb/") and lease["spec"].get("holderIdentity"):
            held.append(key)
    return held


async def _run(chaos: Chaos, api: client.ApiClient) -> None:
    await asyncio.to_thread(chaos.start)
    for _ in range(chaos.scale.rounds):
        await _freeze_with_handlers_waiting(chaos, api)
        await asyncio.to_thread(_partition, chaos)
        await asyncio.to_thread(_restart_api_server, chaos)
    await asyncio.to_thread(_delete_all_while_frozen, chaos)


@pytest.mark.timeout(3600)
async def test_frozen_cut_off_and_blind_replicas_lose_no_update_and_leak_nothing(
    crds: Cluster, logs: Path, api: client.ApiClient
) -> None:
    scale = LONG if os.environ.get("LBOP_CHAOS") == "long" else SHORT
    chaos = Chaos(crds, logs, scale)
    try:
        await _run(chaos, api)
        stats = await asyncio.to_thread(chaos.replicas.simulator.stats)
        at_once = acted_at_once(chaos.replicas.journal)
        log = await asyncio.to_thread(chaos.replicas.simulator.log)
        assert len(log) < 10_000, "the simulator's change log was cut: the order of writes is not all there"
        chaos.tally.lost_updates += regressions(log, "wave")
        left = {kind: n for kind, n in stats["objects"].items() if n}
        chaos.tally.leaked += [f"{kind}: {n} left after delete-all" for kind, n in left.items()]
        locks = await asyncio.to_thread(
            lambda: wait_for_quiet(lambda: _locks_held(chaos.replicas), LEASE + 5)
        )
        print(chaos.tally.result(stats["faults"], stats["overlaps"], at_once))
        tally = chaos.tally
        assert (tally.freezes, tally.partitions) >= (2, 1), "the faults did not happen: this proves nothing"
        assert stats["faults"].get("500", 0) + stats["faults"].get("lost", 0) > 0, "no cloud fault happened"
        assert tally.lost_updates == [], tally.lost_updates
        assert tally.leaked == [], tally.leaked
        assert tally.missing == [], tally.missing
        assert tally.stranded == [], tally.stranded
        assert at_once == [], f"objects written by two replicas at once: {at_once}"
        assert stats["overlaps"] == 0
        assert locks == [], f"locks still held after everything was deleted: {locks}"
    finally:
        await asyncio.to_thread(chaos.stop)


def wait_for_quiet(held: Callable[[], list[str]], within: float) -> list[str]:
    """``held()`` once it is empty, or as it is after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (found := held()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found
