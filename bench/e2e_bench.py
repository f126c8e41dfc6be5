"""``make bench-e2e``: how close N replicas come to the cloud's own limit on a whole fleet, end to end.

The cloud applies one change per load balancer at a time, so no operator can
make a fleet Ready faster than its busiest load balancer's changes take back
to back: ``ideal = lb_ready_delay + mutations(busiest LB) x latency``. This
creates a fleet (default 20 LBs x 5 pools x (4 members + listener + health
monitor) = 720 objects) through the Kubernetes API while the replicas are
already running, and measures the makespan — first create request sent →
every object Ready at its latest generation — in four scenarios, each in a
fresh namespace with a fresh simulator, against the same API server:

a. 3 replicas, default settings (Lease locks, sharding);
b. 1 replica;
c. 3 replicas with ``LBOP_LOCKING=false LBOP_SHARDING=false``: every replica
   handles every object, unserialized — the overlaps and failed cloud calls
   are the point; it may never converge (capped);
d. 3 replicas with ``LBOP_GLOBAL_LOCK=true``: one lock for every change of
   every object, the serial baseline;
e. 3 replicas against **Octavia's own API server** (``tools/octavia/serve.py``)
   instead of the simulator, on a smaller fleet (``--octavia-lbs`` … ; that
   server answers one request at a time): its 409 answers are the overlaps;
f. the same without locks (as c): Octavia's own 409s.

``--only`` picks scenarios (default a, b, c, d; ``make bench-e2e-octavia`` runs e, f).

Per scenario: makespan, efficiency (ideal / makespan), the simulator's
mutations, overlaps and failed calls, the API server's write requests per
cloud change (``apiserver_request_total`` before and after, less the API
server's own background writes over the same span, measured with no operator
running at the start of the run), the Events
posted per object and their top reasons, and where the time beyond the
ideal went on the load balancer that finished last.

The operator runs with the product's retry and poll defaults (the test
harness's faster ones would flatter the figure); every figure is measured in
this one run. The last line is machine-readable: ``RESULT efficiency_3=…
efficiency_1=… speedup_vs_global=… overlaps_unlocked=… apiserver_writes_per_cloud_op=…
lease_writes_per_cloud_op=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import statistics
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes.aio import client, config
from kubernetes.aio.watch import Watch

from lb_operator.api import ALL_KINDS, GROUP, VERSION, Kind
from lb_operator.reconcile.engine import OBJECT_TAG
from lb_operator.settings import OperatorSettings
from lb_operator.sharding import SHARD_LABEL
from lb_operator.sharding.ring import owner
from lb_operator.testing import Cluster, cpu, open_cluster
from lb_operator.testing.cluster import REPO_ROOT, apiserver_writes
from lb_operator.testing.fleet import fleet
from lb_operator.testing.octavia import SUBNET as OCTAVIA_SUBNET
from lb_operator.testing.octavia import OctaviaProcess
from lb_operator.testing.processes import SIMULATOR_TOKEN, SimulatorProcess, is_ready
from lb_operator.testing.replicas import ReplicaFleet, settled

PLURALS = {kind.kind: kind.plural for kind in ALL_KINDS}
# The product's own defaults: ReplicaFleet's test-speed ones (0.5 s retries, 0.5 s polls) would flatter.
PRODUCT_DEFAULTS = {
    name: OperatorSettings.model_fields[name].default
    for name in ("retry_delay", "retry_delay_max", "ready_poll")
}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    replicas: int
    settings: dict[str, str]
    unlocked: bool = False
    octavia: bool = False  # Octavia's own API server as the cloud, and the Octavia fleet


SCENARIOS = (
    Scenario("a", "3 replicas, locks + sharding", 3, {}),
    Scenario("b", "1 replica", 1, {}),
    Scenario("c", "3 replicas, no locks", 3, {"locking": "false", "sharding": "false"}, unlocked=True),
    Scenario("d", "3 replicas, one global lock", 3, {"global_lock": "true"}),
    Scenario("e", "Octavia: 3 replicas, locks + sharding", 3, {}, octavia=True),
    Scenario(
        "f", "Octavia: 3 replicas, no locks", 3, {"locking": "false", "sharding": "false"}, True, octavia=True
    ),
)


@dataclass
class Breakdown:
    """Where the time went, from the simulator's log (seconds after the first create request)."""

    first_call: float = math.nan  # the first cloud change arrives
    cloud_done: float = math.nan  # the last successful cloud change ends
    cloud_lbs: int = 0  # load balancers the cloud saw changes on (more than the fleet's: duplicates)
    critical: str = "-"  # the LB whose last change ended last
    critical_mutations: int = 0
    critical_start: float = math.nan  # its first change starts
    critical_busy: float = math.nan  # sum of its changes' durations (the create: until running)
    critical_idle: float = math.nan  # sum of the gaps between its consecutive changes
    critical_end: float = math.nan
    running_to_pool_median: float = math.nan  # LB running → its first pool create starts
    running_to_pool_max: float = math.nan
    idle_median: float = math.nan  # per LB, idle gaps summed


@dataclass
class Figures:
    scenario: Scenario
    ideal: float = math.nan
    ideal_given_arrivals: float = math.nan  # the same, but no change before its object was created
    objects: int = 0
    error: str | None = None
    makespan: float | None = None  # None: not converged by the deadline
    waited: float = math.nan
    ready: int = 0
    created_in: float = math.nan
    mutations: int = 0
    overlaps: int = 0
    failed: int = 0
    failed_by_outcome: Counter[str] = field(default_factory=Counter)
    log_truncated: bool = False
    cloud_requests: int = 0
    writes_total: int = 0
    writes_background: float = 0.0  # the API server's own writes over the scenario's span, estimated
    writes_operator: float = 0.0
    lease_writes_operator: float = 0.0  # Lease writes (locks, members) less the API server's own
    writes_by_resource: Counter[str] = field(default_factory=Counter)
    events: int = 0
    events_counted: int = 0  # the sum of the Events' `count`
    event_reasons: Counter[str] = field(default_factory=Counter)
    breakdown: Breakdown = field(default_factory=Breakdown)
    not_ready: list[str] = field(default_factory=list)
    cpu: cpu.Usage | None = None  # first create request → every object Ready

    @property
    def writes_per_cloud_op(self) -> float:
        return self.writes_operator / self.mutations if self.mutations else math.nan

    @property
    def lease_writes_per_cloud_op(self) -> float:
        return self.lease_writes_operator / self.mutations if self.mutations else math.nan


class ReplicaExited(RuntimeError):
    """A replica process ended while it should be serving."""


def busiest_mutations(pools: int, members: int) -> int:
    """Cloud changes on one load balancer of the fleet: its create, and per pool the pool and its children."""
    return 1 + pools * (1 + members + 1 + 1)


def ready_now(obj: dict[str, Any]) -> bool:
    """Ready=True at the object's latest generation."""
    observed = (obj.get("status") or {}).get("observedGeneration")
    return is_ready(obj) and observed == obj["metadata"].get("generation")


# --- the cluster side ----------------------------------------------------------------------------------


async def api_client(cluster: Cluster) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


async def create_all(
    cluster: Cluster,
    manifests: list[dict[str, Any]],
    concurrency: int,
    answered: dict[tuple[str, str], float] | None = None,
) -> float:
    """POST every manifest, ``concurrency`` at a time, in manifest order (parents first); return when done.

    ``answered``: filled with each object's (plural, name) → when its create was answered.
    """
    async with await api_client(cluster) as api:
        custom = client.CustomObjectsApi(api)
        gate = asyncio.Semaphore(concurrency)

        async def one(manifest: dict[str, Any]) -> None:
            async with gate:
                namespace = manifest["metadata"]["namespace"]
                plural = PLURALS[manifest["kind"]]
                await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, manifest)
                if answered is not None:
                    answered[plural, manifest["metadata"]["name"]] = time.monotonic()

        await asyncio.gather(*(one(m) for m in manifests))
    return time.monotonic()


async def list_all(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    """Every object of the five kinds in ``namespace``: five LISTs through the API (kubectl's category
    lookup can serve a discovery cache from before the CRDs existed)."""
    lists = await asyncio.gather(
        *(custom.list_namespaced_custom_object(GROUP, VERSION, namespace, k.plural) for k in ALL_KINDS)
    )
    found = []
    for kind, listed in zip(ALL_KINDS, lists, strict=True):
        for o in cast(dict[str, Any], listed)["items"]:
            o.setdefault("kind", kind.kind)
            found.append(o)
    return found


def objects(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]]:
        async with await api_client(cluster) as api:
            return await list_all(client.CustomObjectsApi(api), namespace)

    return asyncio.run(listed())


def until_served(cluster: Cluster, within: float = 60) -> None:
    """Wait until the five kinds can be listed: an Established CRD's storage may still answer 429."""
    deadline = time.monotonic() + within
    while True:
        try:
            objects(cluster, "default")
            return
        except client.ApiException as error:
            if time.monotonic() >= deadline:
                raise
            print(f"  the API server cannot list our kinds yet ({error.status} {error.reason}); waiting")
            time.sleep(1)


def key_of(obj: dict[str, Any]) -> tuple[str, str]:
    return PLURALS[obj["kind"]], obj["metadata"]["name"]


async def until_ready(
    cluster: Cluster,
    namespace: str,
    wanted: set[tuple[str, str]],
    started: float,
    deadline: float,
    alive: Callable[[], None],
) -> tuple[float | None, int]:
    """Watch the five kinds until every (plural, name) in ``wanted`` is Ready: (makespan or None, ready).

    Watched, not polled: a LIST of 720 objects several times a second would
    load the API server the operator is measured against.
    """
    ready: set[tuple[str, str]] = set()
    done = asyncio.Event()

    def seen(obj: dict[str, Any], deleted: bool = False) -> None:
        key = key_of(obj)
        if key in wanted and ready_now(obj) and not deleted:
            ready.add(key)
        else:
            ready.discard(key)
        if len(ready) == len(wanted):
            done.set()

    async def follow(custom: client.CustomObjectsApi, kind: Kind) -> None:
        while True:
            listed = cast(
                dict[str, Any],
                await custom.list_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural),
            )
            for o in listed["items"]:
                o.setdefault("kind", kind.kind)
                seen(o)
            version = listed["metadata"]["resourceVersion"]
            with contextlib.suppress(client.ApiException):  # 410 Gone: list again
                async with Watch() as watch:  # type: ignore[no-untyped-call]
                    stream = watch.stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        kind.plural,
                        resource_version=version,
                        timeout_seconds=300,
                    )
                    async for event in stream:
                        obj = event["object"]
                        obj.setdefault("kind", kind.kind)
                        seen(obj, deleted=event["type"] == "DELETED")

    async with await api_client(cluster) as api:
        custom = client.CustomObjectsApi(api)
        watchers = [asyncio.create_task(follow(custom, kind)) for kind in ALL_KINDS]
        try:
            said = time.monotonic()
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await done.wait()
                now = time.monotonic()
                if done.is_set():
                    return now - started, len(ready)
                if now >= deadline:
                    return None, len(ready)
                if now - said >= 10:
                    print(f"    {now - started:6.1f}s  Ready {len(ready)}/{len(wanted)}", flush=True)
                    said = now
                alive()
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)


def not_ready(found: list[dict[str, Any]], wanted: set[tuple[str, str]]) -> list[str]:
    """One line per workload object not Ready at its latest generation: kind/name, shard, conditions."""
    lines = []
    for o in found:
        if key_of(o) not in wanted or ready_now(o):
            continue
        status = o.get("status") or {}
        shard = (o["metadata"].get("labels") or {}).get(SHARD_LABEL)
        conditions = {c["type"]: f"{c['status']}/{c.get('reason')}" for c in status.get("conditions", [])}
        lines.append(f"{o['kind']}/{o['metadata']['name']} shard={shard} {conditions}")
    return lines


def events_of(cluster: Cluster, namespace: str, uids: set[str]) -> tuple[int, int, Counter[str]]:
    """Events about the workload's objects: how many, the sum of their counts, per reason (by count)."""
    listed = cluster.kubectl("get", "events", "-n", namespace, "-o", "json", timeout=180)
    if listed.returncode != 0:
        raise RuntimeError(f"kubectl get events failed: {listed.stderr}")
    events = counted = 0
    reasons: Counter[str] = Counter()
    for event in json.loads(listed.stdout)["items"]:
        if (event.get("involvedObject") or {}).get("uid") not in uids:
            continue
        count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        events += 1
        counted += count
        reasons[str(event.get("reason"))] += count
    return events, counted, reasons


# --- the simulator side --------------------------------------------------------------------------------


def simulator_get(port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {SIMULATOR_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def breakdown(log: list[dict[str, Any]], started: float, names: dict[str, str]) -> Breakdown:
    """Per cloud LB: its changes back to back, the gaps between them; the one that ended last in detail.

    The simulator's times are its event loop's, ``time.monotonic()`` — the
    same clock as this process's on one machine.
    """
    done = [c for c in log if c["outcome"] == "ok" and c["start"] is not None and c["end"] is not None]
    result = Breakdown()
    if log:
        result.first_call = min(c["arrived"] for c in log) - started
    if not done:
        return result
    result.cloud_done = max(c["end"] for c in done) - started
    per_lb: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in done:
        per_lb[change["load_balancer"]].append(change)
    result.cloud_lbs = len(per_lb)
    idles: dict[str, float] = {}
    to_pool: list[float] = []
    for lb, changes in per_lb.items():
        changes.sort(key=lambda c: c["start"])
        idles[lb] = sum(max(0.0, b["start"] - a["end"]) for a, b in itertools.pairwise(changes))
        created = next((c for c in changes if c["kind"] == "load_balancer" and c["op"] == "create"), None)
        pool = next((c for c in changes if c["kind"] == "pool" and c["op"] == "create"), None)
        if created is not None and pool is not None:
            to_pool.append(pool["start"] - created["end"])
    critical = max(per_lb, key=lambda lb: max(c["end"] for c in per_lb[lb]))
    changes = per_lb[critical]
    result.critical = names.get(critical, critical[:8])
    result.critical_mutations = len(changes)
    result.critical_start = changes[0]["start"] - started
    result.critical_busy = sum(c["end"] - c["start"] for c in changes)
    result.critical_idle = idles[critical]
    result.critical_end = max(c["end"] for c in changes) - started
    if to_pool:
        result.running_to_pool_median = statistics.median(to_pool)
        result.running_to_pool_max = max(to_pool)
    result.idle_median = statistics.median(idles.values())
    return result


# --- one scenario --------------------------------------------------------------------------------------


def check_alive(replicas: ReplicaFleet, logs: Path) -> None:
    if replicas.simulator.process.poll() is not None:
        raise ReplicaExited(f"the simulator exited with {replicas.simulator.process.returncode}; see {logs}")
    for name, replica in replicas.replicas.items():
        code = replica.process.poll()
        if code is not None:
            tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise ReplicaExited(f"{name} exited with {code}: " + " | ".join(tail))


def probe_names(namespace: str, members: list[str], sharding: bool) -> list[str]:
    """Probe LB names: with sharding, one that hashes to each member, so each replica must handle one."""
    if not sharding:
        return ["probe-0"]
    chosen: dict[str, str] = {}
    for n in range(10_000):
        name = f"probe-{n}"
        chosen.setdefault(str(owner(f"{namespace}/{name}", members)), name)
        if len(chosen) == len(members):
            break
    return sorted(chosen.values())


def until_serving(
    cluster: Cluster, replicas: ReplicaFleet, logs: Path, sharding: bool, within: float, octavia: bool = False
) -> None:
    """Wait until every replica handles objects: not just "started" but proven serving.

    A process that is up, or a member Lease that exists, says little about
    whether that replica's Kopf watch is running and the sharder labels for
    it. So: one probe LoadBalancer per replica, named so that each hashes to
    a different member (without sharding every replica handles the one
    probe), wait until every probe is Ready and (sharding) labelled with the
    member it hashes to, then change every probe's spec and wait until each
    is Ready at its new generation with every replica's pid in the handler
    journal for a write of it (an object that moved at rest runs no handler
    on its new owner: only a new generation proves the owner serves). The
    probes stay (Ready, idle): every counter is read after they are Ready,
    and only the workload's objects are waited for and have their Events
    counted.
    """
    members = sorted(replicas.replicas)
    names = probe_names(replicas.namespace, members, sharding)
    probes = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LoadBalancer",
            "metadata": {"name": name, "namespace": replicas.namespace},
            "spec": {
                **({"vipAddresses": [{"subnetUUID": OCTAVIA_SUBNET}]} if octavia else {"zone": "lpg1"}),
                "tags": {"probe": "yes"},
            },
        }
        for name in names
    ]
    asyncio.run(create_all(cluster, probes, 4))
    pids = {replica.process.pid for replica in replicas.replicas.values()}
    deadline = time.monotonic() + within
    touched = False
    while True:
        check_alive(replicas, logs)
        seen = set()
        if replicas.journal.exists():
            for line in replicas.journal.read_text().splitlines():
                with contextlib.suppress(ValueError):  # a line being written
                    entry = json.loads(line)
                    if entry["event"] == "write" and entry.get("generation", 0) >= 2:
                        seen.add(entry["pid"])
        found = objects(cluster, replicas.namespace)
        ready = {o["metadata"]["name"] for o in found if ready_now(o)}
        if set(names) <= ready and (not sharding or settled(found, set(members))):
            if touched and pids <= seen:
                return
            if not touched:
                for name in names:
                    change = json.dumps({"spec": {"tags": {"probe": "serving"}}})
                    patched = cluster.kubectl(
                        "patch", "lb", name, "-n", replicas.namespace, "--type=merge", "-p", change
                    )
                    if patched.returncode != 0:
                        raise RuntimeError(f"cannot change probe {name}: {patched.stderr}")
                touched = True
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"replicas not serving after {within}s: handled by {len(seen & pids)}/{len(pids)} replicas, "
                f"probes Ready {sorted(ready)} of {names}; see the logs in {logs}"
            )
        time.sleep(0.5)


BACKGROUND_WINDOW = 20.0
"""Seconds over which the API server's own writes are counted with no operator running."""


def prepare(cluster: Cluster) -> dict[str, float]:
    """Apply crds/, wait until the API server serves them; return its own background writes per second."""
    applied = cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    if applied.returncode != 0:
        raise RuntimeError(f"applying crds/ failed: {applied.stderr}")
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    until_served(cluster)
    return background_writes(cluster)


def background_writes(cluster: Cluster) -> dict[str, float]:
    """The API server's own write requests per second and resource (its identity Lease, …) with no
    operator running."""
    before = apiserver_writes(cluster)
    started = time.monotonic()
    time.sleep(BACKGROUND_WINDOW)
    after = apiserver_writes(cluster)
    span = time.monotonic() - started
    return {resource: count / span for resource, count in (after - before).items()}


def run_scenario(
    cluster: Cluster, scenario: Scenario, args: argparse.Namespace, logs: Path, background: dict[str, float]
) -> Figures:
    figures = Figures(scenario, ideal=ideal_of(scenario, args))
    cloud: OctaviaProcess | None = None
    if scenario.octavia:
        cloud = OctaviaProcess(logs / "octavia.log", latency=args.latency, lb_ready_delay=args.lb_ready_delay)
    simulator = {"latency": args.latency, "lb_ready_delay": args.lb_ready_delay, "mode": "reject"}
    replicas = ReplicaFleet(
        cluster, logs, simulator=simulator, cloud=cloud, **PRODUCT_DEFAULTS, **scenario.settings
    )
    try:
        for n in range(scenario.replicas):
            replicas.start(f"operator-{n}")
        print(f"  namespace {replicas.namespace}; waiting for the replicas to serve ...", flush=True)
        sharding = scenario.settings.get("sharding") != "false"
        until_serving(cluster, replicas, logs, sharding, 240, scenario.octavia)

        namespace = replicas.namespace
        if scenario.octavia:
            sizes = (args.octavia_lbs, args.octavia_pools, args.octavia_members)
            manifests = fleet(namespace, *sizes, zone=None, vip_subnet=OCTAVIA_SUBNET)
        else:
            manifests = fleet(namespace, args.lbs, args.pools, args.members)
        if args.order == "level":
            # Stable: parents still come before their children.
            manifests.sort(key=lambda m: LEVELS.get(m["kind"], 2))
        figures.objects = len(manifests)
        wanted = {(PLURALS[m["kind"]], m["metadata"]["name"]) for m in manifests}
        stats_before = replicas.simulator.stats()
        writes_before = apiserver_writes(cluster)
        writes_from = time.monotonic()

        groups = {
            "operator": [replica.process.pid for replica in replicas.replicas.values()],
            "apiserver+etcd": cpu.pids_running("kube-apiserver", "etcd"),
            "simulator": [replicas.simulator.process.pid],
        }
        cpu_before = cpu.sample(groups)
        started = time.monotonic()
        print(f"  creating {len(manifests)} objects ...", flush=True)
        answered: dict[tuple[str, str], float] = {}
        figures.created_in = asyncio.run(create_all(cluster, manifests, args.concurrency, answered)) - started
        figures.ideal_given_arrivals = ideal_given_arrivals(
            manifests, {key: at - started for key, at in answered.items()}, args.latency, args.lb_ready_delay
        )
        cap = args.unlocked_deadline if scenario.unlocked else args.deadline
        figures.makespan, figures.ready = asyncio.run(
            until_ready(
                cluster, namespace, wanted, started, started + cap, lambda: check_alive(replicas, logs)
            )
        )
        figures.waited = time.monotonic() - started
        figures.cpu = cpu.between(cpu_before, cpu.sample(groups))

        writes_after = apiserver_writes(cluster)
        writes_span = time.monotonic() - writes_from
        stats = replicas.simulator.stats()
        log: list[dict[str, Any]] = []  # Octavia keeps no log of its changes: no breakdown
        cloud_lbs: list[dict[str, Any]] = []
        if isinstance(replicas.simulator, SimulatorProcess):
            log = simulator_get(replicas.simulator.port, "/debug/log")
            cloud_lbs = replicas.simulator.list("load-balancers")
        found = objects(cluster, namespace)
        if figures.makespan is None:
            figures.not_ready = not_ready(found, wanted)
    finally:
        replicas.stop()

    figures.mutations = stats["mutations"] - stats_before["mutations"]
    figures.overlaps = stats["overlaps"] - stats_before["overlaps"]
    figures.cloud_requests = stats["requests"] - stats_before["requests"]
    scenario_log = [c for c in log if c["arrived"] >= started]
    figures.log_truncated = len(log) >= 10_000 and len(scenario_log) == len(log)
    figures.failed_by_outcome = Counter(c["outcome"] for c in scenario_log if c["outcome"] != "ok")
    figures.failed = sum(figures.failed_by_outcome.values())
    if figures.log_truncated:  # the log kept only the newest; the overlap counter saw every rejection
        figures.failed = max(figures.failed, figures.overlaps)
    figures.writes_by_resource = writes_after - writes_before
    figures.writes_total = sum(figures.writes_by_resource.values())
    figures.writes_background = sum(background.values()) * writes_span
    # Minus the workload's own creates and the API server's own writes over the span.
    figures.writes_operator = figures.writes_total - len(manifests) - figures.writes_background
    leases_background = background.get("leases", 0.0) * writes_span
    figures.lease_writes_operator = figures.writes_by_resource["leases"] - leases_background
    uids = {o["metadata"]["uid"] for o in found if key_of(o) in wanted}
    figures.events, figures.events_counted, figures.event_reasons = events_of(cluster, namespace, uids)
    names = {
        lb["uuid"]: str((lb.get("tags") or {}).get(OBJECT_TAG, lb["uuid"][:8])).removeprefix(f"{namespace}.")
        for lb in cloud_lbs
    }
    figures.breakdown = breakdown(scenario_log, started, names)
    return figures


# --- the report ----------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def _cpu_of(group: str) -> Callable[[Figures], str]:
    def cell(f: Figures) -> str:
        if f.cpu is None:
            return "nan"
        return fmt(f.cpu.other if group == "other" else f.cpu.seconds[group], ".1f", "s")

    return cell


def ideal_of(scenario: Scenario, args: argparse.Namespace) -> float:
    """The busiest load balancer's changes back to back, for the scenario's fleet."""
    if scenario.octavia:
        return (
            args.lb_ready_delay + busiest_mutations(args.octavia_pools, args.octavia_members) * args.latency
        )
    return args.lb_ready_delay + busiest_mutations(args.pools, args.members) * args.latency


LEVELS = {"LoadBalancer": 0, "LoadBalancerPool": 1}
"""``--order level``: creation order by kind; every other kind is level 2."""


def ideal_given_arrivals(
    manifests: list[dict[str, Any]],
    answered: dict[tuple[str, str], float],
    latency: float,
    ready_delay: float,
) -> float:
    """The ideal makespan had no change started before its object's create was answered.

    The ideal above assumes every object exists at the first create; they
    arrive over the seconds the creates take, tree by tree, so the last
    tree's changes cannot begin before it is created. Per tree (objects
    named ``<lb>-…``, parents first): its changes back to back, each at
    the earliest when its object exists.
    """
    done: dict[str, float] = {}
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        tree = name.split("-", 1)[0]
        arrived = answered[PLURALS[manifest["kind"]], name]
        took = latency + (ready_delay if manifest["kind"] == "LoadBalancer" else 0.0)
        done[tree] = max(done.get(tree, 0.0), arrived) + took
    return max(done.values(), default=math.nan)


def _waited(f: Figures, group: str, main: bool = False) -> str:
    if f.cpu is None:
        return "nan"
    return fmt((f.cpu.main_waited if main else f.cpu.waited).get(group, math.nan), ".1f", "s")


def report(results: list[Figures], ideal: float, per_lb: int, args: argparse.Namespace) -> None:
    print()
    print(
        f"workload: {args.lbs} LBs x {args.pools} pools x ({args.members} members + listener + monitor); "
        f"latency {args.latency}s, lb_ready_delay {args.lb_ready_delay}s, mode reject"
    )
    print(
        f"ideal makespan: {args.lb_ready_delay} + {per_lb} x {args.latency} = {ideal:.1f}s "
        "(the busiest LB's changes back to back)"
    )
    if any(f.scenario.octavia for f in results):
        print(
            f"Octavia scenarios: {args.octavia_lbs} LBs x {args.octavia_pools} pools x "
            f"({args.octavia_members} members + listener + monitor), their own ideal below; Octavia's "
            "own API server, one request at a time (its CPU is the 'simulator' row), keeps no change log: no "
            "breakdown, no failed-call count"
        )
    rows: list[tuple[str, Callable[[Figures], str]]] = [
        ("replicas", lambda f: str(f.scenario.replicas)),
        ("objects", lambda f: str(f.objects)),
        ("makespan", lambda f: fmt(f.makespan, ".1f", "s") if f.makespan else f"n/c >{f.waited:.0f}s"),
        ("ideal makespan", lambda f: fmt(f.ideal, ".1f", "s")),
        ("efficiency (ideal / makespan)", lambda f: fmt(f.ideal / f.makespan if f.makespan else None, ".2f")),
        ("ideal given the creates' arrivals", lambda f: fmt(f.ideal_given_arrivals, ".1f", "s")),
        (
            "  efficiency given the arrivals",
            lambda f: fmt(f.ideal_given_arrivals / f.makespan if f.makespan else None, ".2f"),
        ),
        ("Ready at the end", lambda f: f"{f.ready}/{f.objects}"),
        ("all POSTs answered after", lambda f: fmt(f.created_in, ".1f", "s")),
        ("cloud mutations", lambda f: str(f.mutations)),
        ("cloud overlaps (Octavia: 409s)", lambda f: str(f.overlaps)),
        (
            "failed cloud calls",
            lambda f: "-" if f.scenario.octavia else f"{f.failed}{'+' if f.log_truncated else ''}",
        ),
        ("cloud requests (all verbs)", lambda f: str(f.cloud_requests)),
        ("cloud LBs changed", lambda f: str(f.breakdown.cloud_lbs)),
        ("apiserver writes (all)", lambda f: str(f.writes_total)),
        ("apiserver writes (background)", lambda f: f"{f.writes_background:.0f}"),
        ("apiserver writes (operator)", lambda f: f"{f.writes_operator:.0f}"),
        ("  per cloud mutation", lambda f: fmt(f.writes_per_cloud_op, ".2f")),
        ("  of them Lease writes", lambda f: fmt(f.lease_writes_per_cloud_op, ".2f")),
        ("Events per object", lambda f: fmt(f.events / f.objects if f.objects else None, ".2f")),
        (
            "  (by their count field)",
            lambda f: fmt(f.events_counted / f.objects if f.objects else None, ".2f"),
        ),
        (
            "CPU busy (share of all cores)",
            lambda f: fmt(100 * f.cpu.busy_share, ".0f", f"% of {f.cpu.cores}") if f.cpu else "nan",
        ),
        *(
            (f"  CPU seconds: {group}", _cpu_of(group))
            for group in ("operator", "apiserver+etcd", "simulator", "other")
        ),
        (
            "some task waited for a core",
            lambda f: fmt(100 * f.cpu.stalled_share, ".0f", "% of the time") if f.cpu else "nan",
        ),
        ("  replicas' event loops waited", lambda f: _waited(f, "operator", main=True)),
        ("  replicas' threads waited", lambda f: _waited(f, "operator")),
        ("  apiserver+etcd threads waited", lambda f: _waited(f, "apiserver+etcd")),
        ("first cloud call after", lambda f: fmt(f.breakdown.first_call, ".1f", "s")),
        ("last cloud change ends at", lambda f: fmt(f.breakdown.cloud_done, ".1f", "s")),
        (
            "LB running -> 1st pool create, median",
            lambda f: fmt(f.breakdown.running_to_pool_median, ".2f", "s"),
        ),
        ("LB running -> 1st pool create, max", lambda f: fmt(f.breakdown.running_to_pool_max, ".2f", "s")),
        ("idle gaps per LB, median", lambda f: fmt(f.breakdown.idle_median, ".1f", "s")),
        ("last LB to finish", lambda f: f.breakdown.critical),
        ("  its mutations", lambda f: str(f.breakdown.critical_mutations)),
        ("  its first change starts at", lambda f: fmt(f.breakdown.critical_start, ".1f", "s")),
        ("  busy (changes back to back)", lambda f: fmt(f.breakdown.critical_busy, ".1f", "s")),
        ("  idle (gaps between its changes)", lambda f: fmt(f.breakdown.critical_idle, ".1f", "s")),
        ("  its last change ends at", lambda f: fmt(f.breakdown.critical_end, ".1f", "s")),
        (
            "  then until all Ready",
            lambda f: fmt(f.makespan - f.breakdown.critical_end if f.makespan else None, ".1f", "s"),
        ),
    ]
    ran = [f for f in results if f.error is None]
    width, column = 40, 16
    print()
    for f in ran:
        env = " ".join(f"LBOP_{k.upper()}={v}" for k, v in f.scenario.settings.items()) or "default settings"
        print(f"{f.scenario.key}) {f.scenario.title} ({env})")
    print()
    print(f"{'scenario':{width}}" + "".join(f"{f.scenario.key:>{column}}" for f in ran))
    for label, cell in rows:
        print(f"{label:{width}}" + "".join(f"{cell(f):>{column}}" for f in ran))
    for f in results:
        if f.error is not None:
            print(f"\n{f.scenario.key}) {f.scenario.title}: did not run: {f.error}")
    for f in ran:
        print(f"\n{f.scenario.key}) {f.scenario.title}")
        top = ", ".join(f"{r} {n}" for r, n in f.writes_by_resource.most_common(10))
        print(f"  apiserver writes by resource: {top}")
        reasons = ", ".join(f"{r} {n}" for r, n in f.event_reasons.most_common(6)) or "none"
        print(f"  Event reasons (by count): {reasons}")
        if f.failed_by_outcome:
            outcomes = ", ".join(f"{o!r} {n}" for o, n in f.failed_by_outcome.most_common(5))
            print(f"  failed cloud calls by outcome: {outcomes}")
        if f.log_truncated:
            print("  the simulator's log (10000 entries) was full: failed calls are a lower bound")
        if f.not_ready:
            print(f"  not Ready ({len(f.not_ready)}), first 5:", *f.not_ready[:5], sep="\n    ")


def result_line(results: dict[str, Figures], ideal: float) -> str:
    def makespan(key: str) -> float:
        f = results.get(key)
        return f.makespan if f is not None and f.makespan is not None else math.nan

    def efficiency(key: str) -> float:
        return ideal / makespan(key)

    def given_arrivals(key: str) -> float:
        f = results.get(key)
        return f.ideal_given_arrivals / makespan(key) if f is not None else math.nan

    def octavia(key: str) -> str:
        f = results.get(key)
        return str(f.overlaps) if f is not None and f.error is None else "nan"

    unlocked = results.get("c")
    a = results.get("a")
    e = results.get("e")
    efficiency_octavia = e.ideal / e.makespan if e is not None and e.makespan else math.nan
    overlaps = str(unlocked.overlaps) if unlocked is not None and unlocked.error is None else "nan"
    per_op = a.writes_per_cloud_op if a is not None and a.error is None else math.nan
    leases_per_op = a.lease_writes_per_cloud_op if a is not None and a.error is None else math.nan
    return (
        f"RESULT efficiency_3={efficiency('a'):.2f} efficiency_1={efficiency('b'):.2f} "
        f"speedup_vs_global={makespan('d') / makespan('a'):.2f} overlaps_unlocked={overlaps} "
        f"apiserver_writes_per_cloud_op={per_op:.2f} lease_writes_per_cloud_op={leases_per_op:.2f} "
        f"efficiency_octavia={efficiency_octavia:.2f} conflicts_octavia_locked={octavia('e')} "
        f"conflicts_octavia_unlocked={octavia('f')} "
        f"efficiency_3_given_arrivals={given_arrivals('a'):.2f} "
        f"efficiency_1_given_arrivals={given_arrivals('b'):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lbs", type=int, default=20, help="load balancers (default %(default)s)")
    parser.add_argument("--pools", type=int, default=5, help="pools per load balancer (default %(default)s)")
    parser.add_argument("--members", type=int, default=4, help="members per pool (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per cloud change (default 0.2)")
    parser.add_argument(
        "--lb-ready-delay", type=float, default=1.0, help="seconds a new LB is provisioning (default 1.0)"
    )
    parser.add_argument("--only", default="a,b,c,d", help="scenarios to run, e.g. a,b (default a,b,c,d)")
    parser.add_argument(
        "--octavia-lbs", type=int, default=10, help="Octavia scenarios' LBs (default %(default)s)"
    )
    parser.add_argument(
        "--octavia-pools", type=int, default=2, help="their pools per LB (default %(default)s)"
    )
    parser.add_argument(
        "--octavia-members", type=int, default=3, help="members per pool (default %(default)s)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="create requests in flight (default 32)")
    parser.add_argument(
        "--order",
        choices=("tree", "level"),
        default="tree",
        help="create tree by tree (default), or every load balancer first, then every pool, then the rest",
    )
    parser.add_argument("--deadline", type=float, default=600, help="seconds per scenario to converge")
    parser.add_argument(
        "--unlocked-deadline", type=float, default=180, help="seconds scenario (c) may take (default 180)"
    )
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if s.key in {k.strip() for k in args.only.split(",")}]
    if not chosen:
        parser.error(f"--only: none of {args.only!r} is a scenario (a to f)")

    per_lb = busiest_mutations(args.pools, args.members)
    ideal = args.lb_ready_delay + per_lb * args.latency
    logs = Path(tempfile.mkdtemp(prefix="lbop-bench-e2e-"))
    print(f"replica and simulator logs in {logs}/<scenario>/")
    print(
        "operator settings: the product's defaults, with retries and polls passed explicitly as such "
        f"({', '.join(f'LBOP_{k.upper()}={v}' for k, v in PRODUCT_DEFAULTS.items())}); ReplicaFleet adds "
        "only the namespace, identity and handler journal"
    )
    results: dict[str, Figures] = {}
    with open_cluster() as cluster:
        background = prepare(cluster)
        print(f"the API server's own writes with no operator: {sum(background.values()):.2f}/s", flush=True)
        for scenario in chosen:
            env = " ".join(f"LBOP_{k.upper()}={v}" for k, v in scenario.settings.items()) or "defaults"
            print(f"\n{scenario.key}) {scenario.title} ({env})", flush=True)
            folder = logs / scenario.key
            folder.mkdir()
            try:
                figures = run_scenario(cluster, scenario, args, folder, background)
            except (ReplicaExited, TimeoutError) as error:
                print(f"  did not run: {error}", flush=True)
                figures = Figures(scenario, error=str(error))
            else:
                state = (
                    f"{figures.makespan:.1f}s"
                    if figures.makespan
                    else f"not converged in {figures.waited:.0f}s"
                )
                print(f"  makespan {state}; {figures.mutations} mutations, {figures.overlaps} overlaps")
            results[scenario.key] = figures
    report(list(results.values()), ideal, per_lb, args)
    print(result_line(results, ideal))


if __name__ == "__main__":
    main()
