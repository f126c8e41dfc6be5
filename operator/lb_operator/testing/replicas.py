"""Several operator replicas as processes in one namespace, with the simulator: for tests and the demo."""

from __future__ import annotations

import itertools
import json
import os
import signal
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL
from lb_operator.sharding.ring import owner
from lb_operator.sharding.roots import root_of
from lb_operator.testing.cluster import Cluster
from lb_operator.testing.fleet import to_yaml
from lb_operator.testing.octavia import OctaviaProcess
from lb_operator.testing.processes import OperatorProcess, SimulatorProcess, custom_objects, is_ready


class ReplicaFleet:
    """A fresh namespace, the simulator, and named replicas that watch only that namespace.

    Every replica appends to one handler journal (``journal``), so a test
    can check that no object was handled by two replicas at once.
    """

    def __init__(
        self,
        cluster: Cluster,
        logs: Path,
        *,
        simulator: dict[str, Any] | None = None,
        cloud: OctaviaProcess | None = None,
        **settings: Any,
    ) -> None:
        """``simulator``: its flags; ``cloud``: Octavia's API server instead (the fleet stops it too)."""
        self.cluster, self.logs = cluster, logs
        self.namespace = f"rep-{uuid.uuid4().hex[:6]}"
        created = cluster.kubectl("create", "namespace", self.namespace)
        if created.returncode != 0:
            raise RuntimeError(f"kubectl create namespace failed: {created.stderr}")
        flags = {"latency": 0.02, "lb_ready_delay": 0.2, **(simulator or {})}
        if cloud is None and os.environ.get("LBOP_TEST_BACKEND") == "octavia":  # the suites on Octavia
            cloud = OctaviaProcess(
                logs / "octavia.log", latency=flags["latency"], lb_ready_delay=flags["lb_ready_delay"]
            )
        self.simulator: SimulatorProcess | OctaviaProcess = cloud or SimulatorProcess(
            logs / "simulator.log", **flags
        )
        self.journal = logs / "journal.jsonl"
        self.settings = {"retry_delay": 0.5, "retry_delay_max": 5, "ready_poll": 0.5, **settings}
        self.replicas: dict[str, OperatorProcess] = {}

    def start(self, name: str, kubeconfig: Path | None = None, **settings: Any) -> OperatorProcess:
        """Start replica ``name``; ``kubeconfig`` to reach the API server otherwise, ``settings`` its own."""
        replica = OperatorProcess(
            self.cluster,
            self.simulator,
            self.logs / f"{name}.log",
            kubeconfig=kubeconfig,
            watch_namespaces=self.namespace,
            namespace=self.namespace,  # its own locks, members and sharder: nothing shared with other fleets
            identity=name,
            handler_journal=self.journal,
            **{**self.settings, **settings},
        )
        self.replicas[name] = replica
        return replica

    def freeze(self, name: str) -> None:
        """SIGSTOP ``name``: alive, holding its sockets and leases, doing nothing until ``thaw``."""
        self.replicas[name].process.send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        """SIGCONT ``name``: it resumes mid-handler, with whatever it held in memory."""
        self.replicas[name].process.send_signal(signal.SIGCONT)

    def owned_by(self, name: str) -> list[dict[str, Any]]:
        """The objects labelled for replica ``name`` now."""
        return [o for o in self.objects() if (o["metadata"].get("labels") or {}).get(SHARD_LABEL) == name]

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (it stays listed, dead, until ``forget``)."""
        self.replicas[name].process.kill()
        self.replicas[name].process.wait()

    def alive(self) -> set[str]:
        return {name for name, replica in self.replicas.items() if replica.process.poll() is None}

    def apply(self, manifests: list[dict[str, Any]]) -> None:
        applied = self.cluster.kubectl("apply", "-f", "-", input=to_yaml(manifests), timeout=180)
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply failed: {applied.stderr}")

    def objects(self) -> list[dict[str, Any]]:
        return custom_objects(self.cluster, self.namespace)

    def owners(self) -> dict[str, str | None]:
        """Object UID → its shard label."""
        return {
            o["metadata"]["uid"]: (o["metadata"].get("labels") or {}).get(SHARD_LABEL) for o in self.objects()
        }

    def all_ready(self, count: int) -> bool:
        """``count`` objects, each Ready at its latest generation."""
        found = self.objects()
        return len(found) == count and all(
            is_ready(o) and o.get("status", {}).get("observedGeneration") == o["metadata"].get("generation")
            for o in found
        )

    def not_ready(self) -> list[str]:
        """One line per object not Ready at its latest generation: kind/name, owner, conditions."""
        lines = []
        for o in self.objects():
            status = o.get("status", {})
            if is_ready(o) and status.get("observedGeneration") == o["metadata"].get("generation"):
                continue
            labels = o["metadata"].get("labels") or {}
            conditions = {c["type"]: f"{c['status']}/{c.get('reason')}" for c in status.get("conditions", [])}
            lines.append(f"{o['kind']}/{o['metadata']['name']} owner={labels} {conditions}")
        return lines

    def stop(self) -> None:
        for replica in self.replicas.values():
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
            replica.stop()
        self.simulator.stop()


def settled(found: list[dict[str, Any]], members: set[str]) -> bool:
    """Every object labelled with the member its tree hashes to, and none draining."""
    pools = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in found
        if o["kind"] == "LoadBalancerPool"
    }
    for o in found:
        labels = o["metadata"].get("labels") or {}
        wanted = owner(root_of(o, lambda ns, name: pools.get((ns, name))), members)
        if labels.get(SHARD_LABEL) != wanted or DRAIN_LABEL in labels:
            return False
    return True


def handled_by_two_at_once(journal: Path) -> list[str]:
    """Objects whose handler ran in two processes at overlapping times."""
    runs: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    open_runs: dict[tuple[str, int], list[float]] = defaultdict(list)
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        key = (entry["uid"], entry["pid"])
        if entry["event"] == "start":
            open_runs[key].append(entry["t"])
        elif open_runs[key]:
            runs[entry["uid"]].append((open_runs[key].pop(), entry["t"], entry["pid"]))
    for key, starts in open_runs.items():  # a killed process never wrote its ends
        runs[key[0]] += [(start, float("inf"), key[1]) for start in starts]
    overlapping = []
    for uid, spans in runs.items():
        for a, b in itertools.combinations(spans, 2):
            if a[2] != b[2] and a[0] < b[1] and b[0] < a[1]:
                overlapping.append(uid)
    return overlapping
