"""Several replicas as real processes: each object owned by one live replica, each LB's tree by one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import client, config
from operator_harness import is_ready, wait_for

from lb_operator.mutex import LeaseMutex
from lb_operator.reconcile.engine import PARENT_WAIT
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL
from lb_operator.sharding.roots import root_of
from lb_operator.testing import Cluster
from lb_operator.testing.fleet import fleet
from lb_operator.testing.replicas import ReplicaFleet, handled_by_two_at_once, settled

GRACE = 1  # seconds a stopping replica gives its handlers
LEASE = 5  # seconds: short, so a crash is noticed soon; 3 s proved too tight on a loaded 2-core machine


@pytest.fixture
def three(crds: Cluster, logs: Path) -> Iterator[ReplicaFleet]:
    running = ReplicaFleet(crds, logs, lease_duration=LEASE, shutdown_grace=GRACE)
    for n in range(3):
        running.start(f"operator-{n}")
    yield running
    running.stop()


def _ready_fleet(three: ReplicaFleet, lbs: int) -> list[dict[str, Any]]:
    manifests = fleet(three.namespace, lbs, 1, 1)
    three.apply(manifests)
    wait_for("the fleet to be Ready", lambda: three.all_ready(len(manifests)), 240, interval=0.5)
    wait_for("every object with its owner", lambda: settled(three.objects(), set(three.replicas)), 60)
    return manifests


def _trees(found: list[dict[str, Any]]) -> dict[str, set[str | None]]:
    """Root key → the shard labels of every object in that tree."""
    pools = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in found
        if o["kind"] == "LoadBalancerPool"
    }
    trees: dict[str, set[str | None]] = defaultdict(set)
    for o in found:
        trees[root_of(o, lambda ns, name: pools.get((ns, name)))].add(
            (o["metadata"].get("labels") or {}).get(SHARD_LABEL)
        )
    return trees


def _busiest(three: ReplicaFleet) -> str:
    """The replica owning the most objects (which one owns any depends on the namespace's random name)."""
    owned = Counter(shard for shard in three.owners().values() if shard is not None)
    return owned.most_common(1)[0][0]


def _owned_by_survivors(three: ReplicaFleet, gone: str, uids: set[str]) -> float:
    """Wait until every object in ``uids`` is labelled with a replica other than ``gone``; return when."""
    survivors = set(three.replicas) - {gone}

    def moved() -> bool:
        owners = three.owners()  # one kubectl call per look
        return all(owners.get(uid) in survivors for uid in uids)

    wait_for("the survivors to own its objects", moved, 30, interval=0.05)
    return time.monotonic()


def test_three_replicas_split_the_fleet_and_keep_each_tree_together(three: ReplicaFleet) -> None:
    manifests = _ready_fleet(three, 30)
    found = three.objects()
    assert len(found) == len(manifests) == 30 * 5
    owners = {o["metadata"]["uid"]: (o["metadata"].get("labels") or {}).get(SHARD_LABEL) for o in found}
    assert set(owners.values()) == set(three.replicas), f"not every replica owns some: {set(owners.values())}"
    split = {root: shards for root, shards in _trees(found).items() if len(shards) != 1}
    assert not split, f"trees split across replicas: {split}"
    stats = three.simulator.stats()
    assert stats["overlaps"] == 0
    assert stats["objects"]["load_balancers"] == 30
    for replica in three.replicas.values():
        replica.stop()  # each sharder logs what it cost when it steps down
    lists = writes = 0
    pattern = re.compile(r"stepping down after \d+ passes, (\d+) LIST requests, (\d+) label writes")
    for log in three.logs.glob("operator-*.log"):
        for match in pattern.finditer(log.read_text()):
            lists, writes = lists + int(match[1]), writes + int(match[2])
    objects = len(found)
    assert writes >= objects, "the sharder wrote fewer labels than there are objects"
    print(
        f"sharder cost per object: {writes / objects:.2f} label writes, {lists / objects:.2f} LIST requests"
    )


def test_a_replica_stopped_gracefully_hands_its_objects_over_at_once(three: ReplicaFleet) -> None:
    _ready_fleet(three, 9)
    leaving = _busiest(three)
    mine = {uid for uid, shard in three.owners().items() if shard == leaving}
    assert mine, "the leaving replica owned nothing: the test proves nothing"
    process = three.replicas[leaving].process
    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    moved_after = _owned_by_survivors(three, leaving, mine) - stopped_at
    process.wait(timeout=30)
    exited_after = time.monotonic() - stopped_at
    print(f"graceful hand-over: {moved_after:.2f}s for {len(mine)} objects; exit after {exited_after:.2f}s")
    # A replica that kept its member Lease would leave its objects ownerless for a whole lease after its
    # exit (GRACE + LEASE and more): releasing it hands them over within the grace.
    assert moved_after < GRACE + LEASE, f"took {moved_after:.2f}s (shutdown grace {GRACE}s)"
    # Kopf waits 5 s for tasks still running after cleanup (daemons of objects it forgot, say).
    assert exited_after < GRACE + 5, f"the replica took {exited_after:.2f}s to exit"
    assert handled_by_two_at_once(three.journal) == []
    _the_survivors_work_on_what_moved(three, mine)


def test_a_killed_replicas_objects_move_within_the_member_lease(three: ReplicaFleet) -> None:
    _ready_fleet(three, 9)
    dying = _busiest(three)
    mine = {uid for uid, shard in three.owners().items() if shard == dying}
    assert mine, "the dying replica owned nothing: the test proves nothing"
    three.replicas[dying].process.kill()
    killed_at = time.monotonic()
    moved_after = _owned_by_survivors(three, dying, mine) - killed_at
    print(f"crash hand-over: {moved_after:.2f}s for {len(mine)} objects (member lease {LEASE}s)")
    # A killed replica releases nothing: its objects move once its member lease ran out (renewed every
    # third of it) — not before — and then within a sharder pass.
    assert LEASE * 2 / 3 - 0.1 <= moved_after <= LEASE + 2, f"took {moved_after:.2f}s"
    _the_survivors_work_on_what_moved(three, mine)


def test_a_replica_leaves_alone_what_moved_away_and_still_exits_at_once(crds: Cluster, logs: Path) -> None:
    """Kopf forgets an object that leaves a replica's watch but keeps its drift-check timer running."""
    pair = ReplicaFleet(crds, logs, lease_duration=LEASE, shutdown_grace=GRACE, resync_interval=1)
    try:
        first = pair.start("operator-0")
        manifests = fleet(pair.namespace, 6, 1, 0)
        pair.apply(manifests)
        wait_for("the fleet to be Ready", lambda: pair.all_ready(len(manifests)), 120, interval=0.5)
        second = pair.start("operator-1")
        wait_for("half the fleet to move", lambda: settled(pair.objects(), set(pair.replicas)), 60)
        moved_at = time.monotonic()
        moved = {uid for uid, shard in pair.owners().items() if shard == "operator-1"}
        assert moved, "nothing moved: the test proves nothing"

        def runs(pid: int) -> Counter[str]:
            """Handler runs per moved object in process ``pid`` since the move."""
            entries = (json.loads(line) for line in pair.journal.read_text().splitlines())
            return Counter(
                e["uid"]
                for e in entries
                if e["event"] == "start" and e["pid"] == pid and e["t"] > moved_at and e["uid"] in moved
            )

        # Two drift checks of each moved object by its new owner: the old owner's timers, at the same
        # interval, have fired by then too.
        wait_for(
            "the new owner to check each moved object twice",
            lambda: len(moved) == sum(n >= 2 for n in runs(second.process.pid).values()),
            60,
            interval=0.5,
        )
        assert runs(first.process.pid) == {}, "the old owner still worked on objects that moved away"

        # Its drift checks must not hold up its exit either (Kopf waits 5 s for tasks left after cleanup).
        stopped_at = time.monotonic()
        first.stop()
        exited_after = time.monotonic() - stopped_at
        assert exited_after < GRACE + 5, f"the old owner took {exited_after:.2f}s to exit"
    finally:
        pair.stop()


class _Watch:
    """``kubectl get <plural> --watch``: every event of one kind, stamped with the test's monotonic clock.

    Polling could miss a drain that begins and ends between two looks; a watch
    sees each change of the labels.
    """

    def __init__(self, cluster: Cluster, plural: str, namespace: str) -> None:
        self.events: list[tuple[float, str, dict[str, str]]] = []  # (when, name, labels)
        watch = ["get", plural, "-n", namespace, "--watch", "--output-watch-events", "-o", "json"]
        self._process = subprocess.Popen(
            [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig), *watch],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._process.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue  # an event spans several lines
            buffer = buffer.lstrip()[end:]
            metadata = event["object"]["metadata"]
            self.events.append((time.monotonic(), metadata["name"], metadata.get("labels") or {}))

    def drains(self) -> dict[str, float]:
        """Name → seconds from the drain label's first sighting to the last event that still had it."""
        began: dict[str, float] = {}
        ended: dict[str, float] = {}
        for when, name, labels in list(self.events):
            if DRAIN_LABEL in labels:
                began.setdefault(name, when)
            elif name in began and name not in ended:
                ended[name] = when
        return {name: ended[name] - began[name] for name in ended}

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def test_a_drain_cuts_short_a_handlers_wait_for_its_parent(crds: Cluster, logs: Path) -> None:
    """Children wait up to PARENT_WAIT for their parent inside the handler; a move must not wait that long."""
    pair = ReplicaFleet(crds, logs, lease_duration=LEASE)
    watches: list[_Watch] = []
    try:
        pair.start("operator-0")
        orphans = [m for m in fleet(pair.namespace, 12, 1, 1) if m["kind"] != "LoadBalancer"]  # never Ready
        pair.apply(orphans)

        def all_waiting() -> bool:
            found = pair.objects()
            return len(found) == len(orphans) and all(
                any(
                    c["type"] == "Ready" and c.get("reason") == "ParentNotReady"
                    for c in o.get("status", {}).get("conditions", [])
                )
                for o in found
            )

        wait_for("the children to wait for their parents", all_waiting, 60)
        watches = [_Watch(crds, plural, pair.namespace) for plural in ("lblistener", "lbmember")]
        pair.start("operator-1")
        wait_for("every object with its owner", lambda: settled(pair.objects(), set(pair.replicas)), 90)
        drains = {name: took for watch in watches for name, took in watch.drains().items()}
        assert drains, "no waiting child was drained: the test proves nothing"
        slowest = max(drains.values())
        print(
            f"drained {len(drains)} waiting children, slowest {slowest:.2f}s (PARENT_WAIT {PARENT_WAIT:g}s)"
        )
        assert slowest < PARENT_WAIT / 2, f"a drain waited {slowest:.2f}s for a parent wait"
    finally:
        for watch in watches:
            watch.stop()
        pair.stop()


def _the_survivors_work_on_what_moved(three: ReplicaFleet, moved: set[str]) -> None:
    """Change every moved LoadBalancer; the cloud must follow (someone handles them now)."""
    lbs = [o for o in three.objects() if o["kind"] == "LoadBalancer" and o["metadata"]["uid"] in moved]
    assert lbs, "no load balancer moved"
    for lb in lbs:
        patched = three.cluster.kubectl(
            "patch",
            "lb",
            lb["metadata"]["name"],
            "-n",
            three.namespace,
            "--type=merge",
            "-p",
            '{"spec": {"tags": {"moved": "yes"}}}',
        )
        assert patched.returncode == 0, patched.stderr
    uids = {lb["metadata"]["uid"] for lb in lbs}

    def followed() -> bool:
        cloud = three.simulator.list("load-balancers")
        return all(c["tags"].get("moved") == "yes" for c in cloud if c["tags"].get("lboperator-uid") in uids)

    wait_for("the moved load balancers' change to reach the cloud", followed, 60)


def _cli(cluster: Cluster, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    done = subprocess.run(
        [sys.executable, "-m", "lb_operator", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_shards_and_locks_show_members_owners_and_holders(crds: Cluster, logs: Path) -> None:
    pair = ReplicaFleet(crds, logs, lease_duration=LEASE)
    try:
        for n in range(2):
            pair.start(f"operator-{n}")
        manifests = fleet(pair.namespace, 4, 1, 0)
        pair.apply(manifests)
        wait_for("the fleet to be Ready", lambda: pair.all_ready(len(manifests)), 120, interval=0.5)
        wait_for("every object with its owner", lambda: settled(pair.objects(), set(pair.replicas)), 60)

        report = _cli(crds, "shards", "-n", pair.namespace, "--watch-namespaces", pair.namespace)
        rows = {
            line.split()[0]: line.split() for line in report.splitlines()[1:] if line.startswith("operator-")
        }
        assert set(rows) == {"operator-0", "operator-1"}, report
        assert all(row[1] == "live" for row in rows.values()), report
        assert sum(int(row[3]) for row in rows.values()) == len(manifests), report
        assert sum(row[-1] == "yes" for row in rows.values()) == 1, report
        assert "unassigned: 0;" in report

        async def while_held() -> str:
            configuration = client.Configuration()
            await config.load_kube_config(
                config_file=str(crds.kubeconfig), client_configuration=configuration
            )
            async with (
                client.ApiClient(configuration) as api,
                LeaseMutex(api, pair.namespace, "report-test", sweep=False) as mutex,
            ):
                held = await mutex.try_hold("lb/report/held")
                assert held is not None
                async with held:
                    return await asyncio.to_thread(_cli, crds, "locks", "-n", pair.namespace)

        locks = asyncio.run(while_held())
        line = next(row for row in locks.splitlines() if row.startswith("lb/report/held"))
        assert "report-test/" in line, locks
    finally:
        pair.stop()


def test_an_api_server_restart_mid_run_converges_without_conflicts_or_leaks(
    crds: Cluster, logs: Path
) -> None:
    plane = crds.control_plane
    if plane is None:
        pytest.skip("needs the suite's own control plane to restart its API server")
    three = ReplicaFleet(crds, logs, lease_duration=LEASE, nudge_interval=5)
    try:
        for n in range(3):
            three.start(f"operator-{n}")
        manifests = fleet(three.namespace, 5, 2, 2)
        three.apply(manifests)
        wait_for("work under way", lambda: any(is_ready(o) for o in three.objects()), 120, interval=0.2)
        plane.stop_apiserver()  # mid-run: the operators are creating the fleet
        plane.start_apiserver()
        try:
            wait_for("the fleet to be Ready", lambda: three.all_ready(len(manifests)), 90, interval=0.5)
        except TimeoutError:
            print("not Ready:", *three.not_ready(), sep="\n  ")
            raise
        per_object = Counter(
            lb["tags"].get("lboperator-uid") for lb in three.simulator.list("load-balancers")
        )
        assert len(per_object) == 5
        assert set(per_object.values()) == {1}, f"cloud load balancers per object: {per_object}"

        deleted = crds.kubectl("delete", "lboperator", "--all", "-n", three.namespace, "--timeout=180s")
        assert deleted.returncode == 0, deleted.stderr
        stats = three.simulator.stats()
        assert stats["overlaps"] == 0
        assert not {kind: n for kind, n in stats["objects"].items() if n}, stats["objects"]
    finally:
        three.stop()
