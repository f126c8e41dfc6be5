"""``make demo``: the whole product on one machine, with no cloud account and no Docker.

Starts a local control plane (or uses the cluster of ``LBOP_KUBECONFIG``),
the simulator and three operator replicas as processes; applies ``crds/``,
``examples/demo/`` and one Service of ``type: LoadBalancer`` with the
operator's class (on a control plane of its own, two Nodes for its
members: no kubelet, Ready in their status); shows live progress until
every object is Ready and the Service has its ingress; then kills the
replica that owns the most objects and shows the others take them over;
prints a summary table; stops everything it started, also on Ctrl-C. The last line is machine-readable:
``RESULT objects=… ready=… seconds=… overlaps=… lock_waits=… takeover_s=… killed_owned=… moved=…
events_per_object=… error_lines=… apiserver_writes_per_cloud_op=… lease_writes_per_cloud_op=…
service_ingress=…``
(``killed_owned``: the objects the killed replica owned; ``moved``: how many of them the survivors own
now; the write counts are ``nan`` when the API server's ``/metrics`` cannot be read, and include
other clients' writes on a cluster the demo did not start).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

from lb_operator.sharding import SHARD_LABEL
from lb_operator.testing.cluster import REPO_ROOT, Cluster, apiserver_writes, open_cluster
from lb_operator.testing.controlplane import free_port
from lb_operator.testing.fleet import SUBNET, fleet, to_yaml
from lb_operator.testing.octavia import SUBNET as OCTAVIA_SUBNET
from lb_operator.testing.octavia import OctaviaProcess
from lb_operator.testing.processes import (
    OperatorProcess,
    SimulatorProcess,
    custom_objects,
    is_ready,
)

NAMESPACE = "lb-demo"
SERVICE = "demo-web"
REPLICAS = 3
LEASE = 5  # seconds: short, so the take-over shows within the demo (the product's default is 15)


@contextmanager
def demo_cluster() -> Iterator[Cluster]:
    """The cluster of LBOP_KUBECONFIG, else a local control plane for the demo's duration."""
    given = os.environ.get("LBOP_KUBECONFIG")
    if given:
        os.environ["LBOP_TEST_KUBECONFIG"] = given
    with open_cluster() as cluster:
        yield cluster


@dataclass
class Replica:
    name: str
    process: OperatorProcess
    metrics_port: int

    def metric(self, name: str, kinds: tuple[str, ...] = ("lb", "pool"), **labels: str) -> float:
        """The sum of a mutex metric's samples for lock ``kinds`` (and ``labels``), as served now."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return 0.0
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
            and sample.labels.get("kind") in kinds
            and labels.items() <= sample.labels.items()
        )


@dataclass
class Progress:
    """One status line, redrawn in place on a terminal and printed every few seconds elsewhere."""

    out: TextIO = sys.stdout
    every: float = 5.0
    _last: float = field(default=0.0)

    def show(self, line: str, *, final: bool = False) -> None:
        if self.out.isatty():
            self.out.write("\r\033[K" + line + ("\n" if final else ""))
            self.out.flush()
        elif final or time.monotonic() - self._last >= self.every:
            self.out.write(line + "\n")
            self.out.flush()
            self._last = time.monotonic()


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _owners(found: list[dict[str, Any]]) -> Counter[str]:
    return Counter((o["metadata"].get("labels") or {}).get(SHARD_LABEL) or "-" for o in found)


def _events(cluster: Cluster) -> list[dict[str, Any]]:
    """The Events of the demo's namespace (what `kubectl describe` shows a person)."""
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json")
    if events.returncode != 0:
        return []
    items: list[dict[str, Any]] = json.loads(events.stdout)["items"]
    return items


def _until(check: Callable[[], bool], timeout: float, alive: Callable[[], None]) -> bool:
    """Poll ``check`` twice a second until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        if check():
            return True
        time.sleep(0.5)
    return False


def demo_service(backend: str) -> dict[str, Any]:
    """The demo's classed Service: HTTP over TCP and DNS over UDP, its members on the Nodes."""
    annotations = {"lboperator.dev/member-subnet": SUBNET}
    if backend == "octavia":
        annotations["lboperator.dev/vip-subnet"] = OCTAVIA_SUBNET
    else:
        annotations["lboperator.dev/zone"] = "lpg1"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": f"lboperator.dev/{backend}",
            "selector": {"app": SERVICE},
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353},
            ],
        },
    }


def demo_nodes() -> list[dict[str, Any]]:
    """Two Nodes for a control plane with none (no kubelet: Ready as their status says)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"demo-node-{n}"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Demo", "message": "no kubelet"}
                ],
                "addresses": [{"type": "InternalIP", "address": f"10.99.0.{n + 1}"}],
            },
        }
        for n in range(2)
    ]


def _ingress(cluster: Cluster) -> str:
    got = cluster.kubectl("get", "service", SERVICE, "-n", NAMESPACE, "-o", "json")
    if got.returncode != 0:
        return ""
    ingress = json.loads(got.stdout).get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return ",".join(str(i.get("ip")) for i in ingress)


def _run(cluster: Cluster, logs: Path, stack: ExitStack, args: argparse.Namespace) -> tuple[str, bool]:
    say = print
    applied = cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    if applied.returncode != 0:
        raise RuntimeError(f"applying crds/ failed: {applied.stderr}")
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    created = cluster.kubectl("apply", "-f", str(REPO_ROOT / "examples" / "demo" / "00-namespace.yaml"))
    if created.returncode != 0:
        raise RuntimeError(f"creating namespace {NAMESPACE} failed: {created.stderr}")
    simulator: SimulatorProcess | OctaviaProcess
    if args.backend == "octavia":  # Octavia's own API server: its 409 answers are the overlaps
        simulator = OctaviaProcess(logs / "octavia.log", latency=args.latency, lb_ready_delay=0.5)
        fleet_yaml = to_yaml(fleet(NAMESPACE, 10, 2, 3, zone=None, vip_subnet=OCTAVIA_SUBNET))
    else:
        simulator = SimulatorProcess(logs / "simulator.log", latency=args.latency)
        fleet_yaml = (REPO_ROOT / "examples" / "demo" / "10-fleet.yaml").read_text()
    stack.callback(simulator.stop)
    replicas: dict[str, Replica] = {}
    for n in range(REPLICAS):
        name, port = f"operator-{n}", free_port()
        process = OperatorProcess(
            cluster,
            simulator,
            logs / f"{name}.log",
            identity=name,
            namespace="default",  # the Leases: not in lb-demo, which is deleted while they are still in use
            watch_namespaces=NAMESPACE,
            lease_duration=LEASE,
            metrics_port=port,
            listen_address="127.0.0.1",
        )
        stack.callback(process.stop)
        replicas[name] = Replica(name, process, port)
    cloud = "Octavia's own API server" if args.backend == "octavia" else "simulator"
    say(f"{cloud} at {simulator.url}; {REPLICAS} operator replicas; their logs in {logs}")

    def alive() -> None:
        for replica in replicas.values():
            code = replica.process.process.poll()
            if code is not None and replica.name != killed:
                raise RuntimeError(f"{replica.name} exited with {code}; see {logs}/{replica.name}.log")

    killed = ""
    progress = Progress()
    # The API server's writes over the build (all its clients': on a shared cluster, others' too).
    try:
        writes_before: Counter[str] | None = apiserver_writes(cluster)
    except RuntimeError as error:  # not allowed to read /metrics
        say(f"the API server's write counts cannot be read: {error}")
        writes_before = None
    started = time.monotonic()
    if cluster.control_plane is not None:  # our own control plane has no Nodes: two, for the members
        made = cluster.kubectl("create", "-f", "-", input=to_yaml(demo_nodes()))
        if made.returncode != 0:
            raise RuntimeError(f"creating the demo Nodes failed: {made.stderr}")
    fleet_yaml = fleet_yaml.rstrip("\n") + "\n---\n" + to_yaml([demo_service(args.backend)])
    applied = cluster.kubectl("apply", "-f", "-", input=fleet_yaml, timeout=300)
    if applied.returncode != 0:
        raise RuntimeError(f"applying the demo fleet failed: {applied.stderr}")
    total = ready = 0
    found: list[dict[str, Any]] = []

    def all_ready() -> bool:
        nonlocal found, total, ready
        found = custom_objects(cluster, NAMESPACE)
        total, ready = len(found), sum(is_ready(o) for o in found)
        stats = simulator.stats()
        handovers = sum(r.metric("lbop_mutex_handovers_total") for r in replicas.values())
        shares = " ".join(f"{name[-1]}:{n}" for name, n in sorted(_owners(found).items()))
        progress.show(
            f"{time.monotonic() - started:6.1f}s {_bar(ready, total)} Ready {ready}/{total}  "
            f"lock hand-overs {handovers:.0f}  per replica {shares}  overlaps {stats['overlaps']}"
        )
        return bool(total) and ready == total and bool(_ingress(cluster))

    converged = _until(all_ready, args.timeout, alive)
    seconds = time.monotonic() - started
    progress.show(f"{seconds:6.1f}s {_bar(ready, total)} Ready {ready}/{total}", final=True)
    per_change = lease_per_change = float("nan")
    by_resource = "not measured (/metrics of the API server could not be read)"
    if writes_before is not None:
        writes = apiserver_writes(cluster) - writes_before
        mutations = simulator.stats()["mutations"]
        # Less the demo's own creates (kubectl apply); the API server's own writes (its identity Lease,
        # about one every 10 s) are left in: a few over the demo's build.
        per_change = (sum(writes.values()) - total) / max(mutations, 1)
        lease_per_change = writes["leases"] / max(mutations, 1)
        by_resource = ", ".join(f"{resource} {n}" for resource, n in writes.most_common(6))
    acquisitions = sum(r.metric("lbop_mutex_acquisitions_total") for r in replicas.values())
    quick = sum(r.metric("lbop_mutex_wait_seconds_bucket", le="0.1") for r in replicas.values())
    lock_waits = acquisitions - quick  # an uncontended acquisition is one Lease write, well under 0.1 s

    takeover = float("nan")
    mine: set[str] = set()
    moved = 0
    if converged:
        owned = _owners(found)
        killed = max((name for name in replicas), key=lambda name: owned.get(name, 0))
        mine = {
            o["metadata"]["uid"]
            for o in custom_objects(cluster, NAMESPACE)
            if (o["metadata"].get("labels") or {}).get(SHARD_LABEL) == killed
        }
        say(f"killing {killed} (SIGKILL), which owns {len(mine)} objects; the others take over ...")
        replicas[killed].process.process.kill()
        replicas[killed].process.process.wait()
        killed_at = time.monotonic()
        survivors = set(replicas) - {killed}

        def taken_over() -> bool:
            now = custom_objects(cluster, NAMESPACE)
            owners = {o["metadata"]["uid"]: (o["metadata"].get("labels") or {}).get(SHARD_LABEL) for o in now}
            return all(owners.get(uid) in survivors for uid in mine)

        if mine and _until(taken_over, 3 * LEASE + 30, alive):  # owning nothing, nothing would move
            takeover = time.monotonic() - killed_at
        now = custom_objects(cluster, NAMESPACE)
        moved = sum(
            1
            for o in now
            if o["metadata"]["uid"] in mine
            and (o["metadata"].get("labels") or {}).get(SHARD_LABEL) in survivors
        )
        shares = ", ".join(
            f"{name} {n}" for name, n in sorted(_owners(custom_objects(cluster, NAMESPACE)).items())
        )
        say(f"taken over in {takeover:.1f}s (member lease {LEASE}s); objects per replica now: {shares}")

    listed = cluster.kubectl("get", "service", SERVICE, "-n", NAMESPACE)
    say(f"the classed Service (its tree is {SERVICE}'s objects above):\n{listed.stdout.rstrip()}")
    ingress = _ingress(cluster)
    stats = simulator.stats()
    events = _events(cluster)
    posted = sum(e.get("count", 1) for e in events)
    errors = sum(
        " ERROR " in line
        for name in replicas
        for line in (logs / f"{name}.log").read_text(errors="replace").splitlines()
    )
    rows = [
        ("objects", f"{total}"),
        ("Ready", f"{ready} in {seconds:.1f}s"),
        ("cloud mutations", f"{stats['mutations']}"),
        (
            "cloud overlaps",
            f"{stats['overlaps']} (must be 0){' = answers 409' if args.backend == 'octavia' else ''}",
        ),
        ("load-balancer locks taken", f"{acquisitions:.0f}"),
        ("  of them waited > 0.1 s", f"{lock_waits:.0f} (another change of the same tree went first)"),
        ("take-over after a kill", f"{takeover:.1f}s for {REPLICAS - 1} survivors"),
        ("Events per object", f"{posted / max(total, 1):.2f}"),
        ("API writes per cloud change", f"{per_change:.2f} (until all were Ready)"),
        ("  of them Lease writes", f"{lease_per_change:.2f}"),
        ("ERROR lines in the logs", f"{errors}"),
    ]
    say("")
    for label, value in rows:
        say(f"  {label:32} {value}")
    say(f"  API writes by resource: {by_resource}")
    say("")
    if cluster.control_plane is None:  # a cluster we did not start: leave it as we found it
        say("deleting the demo objects from the cluster ...")
        # The objects first, while the replicas can still take locks; the namespace without waiting
        # (a control plane without kube-controller-manager never finishes deleting a namespace).
        demo = REPO_ROOT / "examples" / "demo"
        cluster.kubectl("delete", "-f", "-", "--timeout=300s", input=fleet_yaml, timeout=320)
        cluster.kubectl("delete", "-f", str(demo / "00-namespace.yaml"), "--wait=false")
    overlaps = stats["overlaps"]
    line = (
        f"RESULT objects={total} ready={ready} seconds={seconds:.1f} overlaps={overlaps} "
        f"lock_waits={lock_waits:.0f} takeover_s={takeover:.1f} killed_owned={len(mine)} moved={moved} "
        f"events_per_object={posted / max(total, 1):.2f} error_lines={errors} "
        f"apiserver_writes_per_cloud_op={per_change:.2f} lease_writes_per_cloud_op={lease_per_change:.2f} "
        f"service_ingress={ingress or 'none'}"
    )
    return line, converged and overlaps == 0 and not math.isnan(takeover) and moved == len(mine) > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per cloud change (default 0.2)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for Ready (default 600)")
    parser.add_argument(
        "--backend",
        choices=("cloudscale", "octavia"),
        default="cloudscale",
        help="the cloud: the simulator of cloudscale's API (default), or Octavia's own API server",
    )
    args = parser.parse_args()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    logs = Path(tempfile.mkdtemp(prefix="lbop-demo-"))
    try:
        with demo_cluster() as cluster, ExitStack() as stack:
            result, ok = _run(cluster, logs, stack, args)
    except KeyboardInterrupt:
        print("\ninterrupted: stopped everything the demo started", file=sys.stderr)
        return 130
    print(result)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
