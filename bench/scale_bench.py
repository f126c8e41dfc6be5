"""``make bench-scale``: a large fleet created through the API while 3 replicas serve; what it costs.

Creates ``--objects`` objects (default 10,000: trees of 13 — a load
balancer, 2 pools, each with 3 members, a listener and a health monitor)
through the Kubernetes API, ``--concurrency`` create requests in flight,
tree by tree, while 3 replicas with the product's defaults are serving
(proven as in ``make bench-e2e``), against the simulator (latency 0.05 s,
load balancers running after 1 s, mode ``reject``). It measures:

- ``create_s``: first create request → every create answered;
- ``ready_s``: first create request → every object Ready at its generation
  (one watch per kind, as bench-e2e);
- ``ideal_s``: what the cloud itself needs for one tree, its changes back to
  back (``lb_ready_delay + 13 x latency``): with every object there at once
  no operator could be faster; the goal is ``ready_s - create_s`` within 2x;
- ``rss_mb_max``: the largest resident set of any replica, sampled every second;
- ``apiserver_writes_per_object``: the API server's write requests (less the
  workload's creates and the API server's own background writes) per object;
- ``cloud_reads_per_object_per_resync``: the simulator's read requests over
  one drift interval (``--resync``, the replicas' ``LBOP_RESYNC_INTERVAL``)
  in steady state (the interval after the one that follows all Ready), per object;
- ``sharder_passes``: passes of every sharder term (from the replicas' logs);
- the CPU seconds of the replicas, the API server and etcd, and the simulator;
  how long their threads were ready to run with every core taken (the
  scheduler's run-queue wait), and the share of the time in which any task
  waited so; and what the CPU work alone takes on this machine (all of it
  over the cores), the least time any schedule could take;
- first (``--baseline``, the default), the same fleet created with no
  operator running: how long the creates take, and the API server's and
  etcd's CPU for the workload alone.

The last line is machine-readable: ``RESULT objects=… ready_s=… ideal_s=…
create_s=… rss_mb_max=… apiserver_writes_per_object=…
cloud_reads_per_object_per_resync=… sharder_passes=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import tempfile
import threading
import time
from pathlib import Path

from kubernetes.aio import client

from e2e_bench import (
    PLURALS,
    PRODUCT_DEFAULTS,
    api_client,
    check_alive,
    create_all,
    prepare,
    simulator_get,
    until_ready,
    until_serving,
)
from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.testing import Cluster, cpu, open_cluster
from lb_operator.testing.cluster import apiserver_writes
from lb_operator.testing.fleet import fleet
from lb_operator.testing.replicas import ReplicaFleet

POOLS, MEMBERS = 2, 3
TREE = 1 + POOLS * (1 + MEMBERS + 2)  # a load balancer; per pool the pool, its members, a listener, a monitor


def rss_mb(pid: int) -> float:
    """Resident set of ``pid`` in MiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


class RssSampler(threading.Thread):
    """The largest resident set of any of ``pids`` while running, sampled every ``every`` seconds."""

    def __init__(self, pids: list[int], every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.most = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.most = max([self.most, *(rss_mb(pid) for pid in self.pids)])

    def stop(self) -> float:
        self._done.set()
        self.join()
        return max([self.most, *(rss_mb(pid) for pid in self.pids)])


def sharder_passes(logs: Path) -> int:
    """Passes of every sharder term, from the line each term logs when it ends."""
    passes = 0
    for log in logs.glob("operator-*.log"):
        for found in re.finditer(r"sharder: stepping down after (\d+) passes", log.read_text()):
            passes += int(found.group(1))
    return passes


def baseline(cluster: Cluster, trees: int, concurrency: int) -> None:
    """The same fleet created with no operator running, then deleted: what the workload alone costs."""
    namespace = "baseline-no-operator"
    cluster.kubectl("create", "namespace", namespace)
    manifests = fleet(namespace, trees, POOLS, MEMBERS)
    groups = {"apiserver+etcd": cpu.pids_running("kube-apiserver", "etcd")}
    before = cpu.sample(groups)
    started = time.monotonic()
    create_s = asyncio.run(create_all(cluster, manifests, concurrency)) - started
    usage = cpu.between(before, cpu.sample(groups))
    print(
        f"baseline, no operator: {len(manifests)} creates answered after {create_s:.1f}s; "
        f"apiserver+etcd {usage.seconds['apiserver+etcd']:.0f} CPU-s, machine "
        f"{100 * usage.busy_share:.0f}% busy of {usage.cores} cores",
        flush=True,
    )

    async def delete_all() -> None:
        async with await api_client(cluster) as api:
            custom = client.CustomObjectsApi(api)
            for kind in ALL_KINDS:  # no operator, no finalizers: gone at once
                plural = kind.plural
                await custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, plural)

    asyncio.run(delete_all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=10_000, help="objects, in trees of 13 (default 10000)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per cloud change (default 0.05)")
    parser.add_argument("--lb-ready-delay", type=float, default=1.0, help="seconds a new LB is provisioning")
    parser.add_argument("--concurrency", type=int, default=32, help="create requests in flight (default 32)")
    parser.add_argument("--resync", type=float, default=60, help="the replicas' drift interval, seconds")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds to wait for all Ready")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first create (and delete) the fleet with no operator running (default: yes)",
    )
    args = parser.parse_args()

    trees = max(1, math.ceil(args.objects / TREE))
    ideal = args.lb_ready_delay + TREE * args.latency
    logs = Path(tempfile.mkdtemp(prefix="lbop-bench-scale-"))
    print(f"replica and simulator logs in {logs}")
    with open_cluster() as cluster:
        background = prepare(cluster)
        if args.baseline:
            baseline(cluster, trees, args.concurrency)
        simulator = {"latency": args.latency, "lb_ready_delay": args.lb_ready_delay, "mode": "reject"}
        replicas = ReplicaFleet(
            cluster, logs, simulator=simulator, **PRODUCT_DEFAULTS, resync_interval=args.resync
        )
        try:
            for n in range(args.replicas):
                replicas.start(f"operator-{n}")
            print(f"namespace {replicas.namespace}; waiting for the replicas to serve ...", flush=True)
            until_serving(cluster, replicas, logs, True, 240)
            manifests = fleet(replicas.namespace, trees, POOLS, MEMBERS)
            wanted = {(PLURALS[m["kind"]], m["metadata"]["name"]) for m in manifests}
            pids = [replica.process.pid for replica in replicas.replicas.values()]
            groups = {
                "operator": pids,
                "apiserver+etcd": cpu.pids_running("kube-apiserver", "etcd"),
                "simulator": [replicas.simulator.process.pid],
            }
            rss = RssSampler(pids)
            rss.start()
            writes_before, cpu_before = apiserver_writes(cluster), cpu.sample(groups)
            started = time.monotonic()
            print(f"creating {len(manifests)} objects ({trees} trees of {TREE}) ...", flush=True)
            create_s = asyncio.run(create_all(cluster, manifests, args.concurrency)) - started
            print(f"  every create answered after {create_s:.1f}s", flush=True)
            ready_s, ready = asyncio.run(
                until_ready(
                    cluster,
                    replicas.namespace,
                    wanted,
                    started,
                    started + args.deadline,
                    lambda: check_alive(replicas, logs),
                )
            )
            span = time.monotonic() - started
            writes = apiserver_writes(cluster) - writes_before
            usage = cpu.between(cpu_before, cpu.sample(groups))
            print(f"  Ready {ready}/{len(manifests)} after {span:.1f}s", flush=True)

            # The measurement windows themselves, not waits for a condition: one drift interval for every
            # object's first check (the lists are read as objects come), then one in steady state.
            print(f"one drift interval ({args.resync:.0f}s) for the first checks ...", flush=True)
            time.sleep(args.resync)
            stats_before = simulator_get(replicas.simulator.port, "/debug/stats")
            print(f"counting cloud reads over the next drift interval ({args.resync:.0f}s) ...", flush=True)
            time.sleep(args.resync)
            stats_after = simulator_get(replicas.simulator.port, "/debug/stats")
            rss_most = rss.stop()
        finally:
            replicas.stop()

    objects = len(manifests)
    operator_writes = sum(writes.values()) - objects - sum(background.values()) * span
    requests = stats_after["requests"] - stats_before["requests"]
    changes = stats_after["mutations"] - stats_before["mutations"]
    reads_per_object = (requests - changes) / objects
    passes = sharder_passes(logs)
    top = ", ".join(f"{resource} {count}" for resource, count in writes.most_common(8))
    print(f"\napiserver writes by resource (creates included): {top}")
    print(
        f"CPU over {span:.0f}s: machine {100 * usage.busy_share:.0f}% busy of {usage.cores} cores; "
        + ", ".join(f"{group} {seconds:.0f}s" for group, seconds in usage.seconds.items())
        + f", other {usage.other:.0f}s"
    )
    print(
        f"waiting for a core: some task {100 * usage.stalled_share:.0f}% of the time; the replicas' event "
        f"loops {usage.main_waited['operator']:.0f}s (all their threads {usage.waited['operator']:.0f}s), "
        f"apiserver+etcd threads {usage.waited['apiserver+etcd']:.0f}s"
    )
    needed = (sum(usage.seconds.values()) + usage.other) / usage.cores
    print(f"the CPU work alone over {usage.cores} cores: {needed:.0f}s (Ready after {span:.0f}s)")
    print(f"time beyond creation: {(ready_s or math.nan) - create_s:.1f}s (2x the ideal: {2 * ideal:.1f}s)")
    print(
        f"RESULT objects={objects} ready_s={ready_s if ready_s is not None else math.nan:.1f} "
        f"ideal_s={ideal:.2f} create_s={create_s:.1f} rss_mb_max={rss_most:.0f} "
        f"apiserver_writes_per_object={operator_writes / objects:.2f} "
        f"cloud_reads_per_object_per_resync={reads_per_object:.2f} sharder_passes={passes}"
    )


if __name__ == "__main__":
    main()
