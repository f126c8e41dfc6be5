"""What the chaos suites check when the faults are over: the cloud against the Kubernetes objects.

Written apart from the operator's own comparison code (``reconcile/kinds.py``)
on purpose: a checker that shared it would agree with its bugs.

- ``lost_updates``: objects whose cloud twin differs, field by field, from
  their latest spec; and ``regressions``: writes, in the cloud's own log, of
  an older wave of a tag over a newer one — an older spec written over a
  newer one, even if something set it right again later;
- ``leaked``: cloud objects no Kubernetes object owns (by the UID tag), or a
  second one for the same object;
- ``missing``: objects with no cloud twin;
- ``stranded``: objects not Ready at their current generation;
- ``acted_at_once``: objects two replicas wrote at overlapping times (the
  handler journal).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from lb_operator.testing.octavia import OctaviaProcess
from lb_operator.testing.processes import SimulatorProcess, is_ready

UID_TAG = "lboperator-uid"
OBJECT_TAG = "lboperator-object"
COLLECTIONS = {
    "LoadBalancer": "load-balancers",
    "LoadBalancerPool": "load-balancers/pools",
    "LoadBalancerListener": "load-balancers/listeners",
    "LoadBalancerHealthMonitor": "load-balancers/health-monitors",
}


def cloud_objects(simulator: SimulatorProcess | OctaviaProcess) -> dict[str, list[dict[str, Any]]]:
    """Every cloud object, by the Kubernetes kind it stands for."""
    found = {kind: simulator.list(path) for kind, path in COLLECTIONS.items()}
    found["LoadBalancerPoolMember"] = [
        member
        for pool in found["LoadBalancerPool"]
        for member in simulator.list(f"load-balancers/pools/{pool['uuid']}/members")
    ]
    return found


def _networks(cidrs: Iterable[str]) -> set[Any]:
    return {ip_network(cidr, strict=False) for cidr in cidrs}


def _wanted(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields the cloud twin of ``obj`` must have, from its spec alone."""
    metadata, spec, status = obj["metadata"], obj["spec"], obj.get("status") or {}
    kind = obj["kind"]
    wanted: dict[str, Any] = {
        "name": spec.get("cloudName") or f"{metadata['namespace']}-{metadata['name']}",
        "tags": {
            **(spec.get("tags") or {}),
            UID_TAG: metadata["uid"],
            OBJECT_TAG: f"{metadata['namespace']}.{metadata['name']}",
        },
    }
    if kind == "LoadBalancer":
        if "zone" in spec:  # cloudscale's shape; Octavia's names a VIP subnet instead
            wanted |= {"zone": spec["zone"], "flavor": spec.get("flavor", "lb-standard")}
    elif kind == "LoadBalancerPool":
        wanted |= {"algorithm": spec["algorithm"], "protocol": spec["protocol"]}
        wanted["load_balancer"] = status.get("loadBalancerUUID")
    elif kind == "LoadBalancerPoolMember":
        wanted |= {
            "address": spec["address"],
            "protocol_port": spec["protocolPort"],
            "enabled": spec.get("enabled", True),
            "subnet": spec["subnetUUID"],
            "pool": status.get("poolUUID"),
        }
    elif kind == "LoadBalancerListener":
        wanted |= {
            "protocol": spec.get("protocol", "tcp"),
            "protocol_port": spec["protocolPort"],
            "allowed_cidrs": _networks(spec.get("allowedCIDRs") or []),
            "pool": status.get("poolUUID"),
        }
    else:
        wanted |= {"type": spec["type"], "pool": status.get("poolUUID")}
        if spec.get("http"):
            wanted["url_path"] = spec["http"].get("urlPath", "/")
        wanted.pop("name")  # health monitors have no name
    return wanted


def _has(cloud: dict[str, Any]) -> dict[str, Any]:
    """The fields of a cloud object ``_wanted`` speaks of, in the same form."""
    has = dict(cloud)
    for stub in ("zone", "flavor"):
        if isinstance(has.get(stub), dict):
            has[stub] = has[stub]["slug"]
    for stub in ("load_balancer", "pool", "subnet"):
        if isinstance(has.get(stub), dict):
            has[stub] = has[stub]["uuid"]
    if "allowed_cidrs" in has:
        has["allowed_cidrs"] = _networks(has["allowed_cidrs"])
    if isinstance(has.get("http"), dict):
        has["url_path"] = has["http"].get("url_path")
    return has


class Oracle:
    """One look at the cloud and the objects, and the verdicts on it."""

    def __init__(self, objects: list[dict[str, Any]], cloud: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.cloud = cloud
        self._twins: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for kind, items in cloud.items():
            for item in items:
                self._twins[f"{kind}/{item['tags'].get(UID_TAG, '?untagged')}"].append(item)

    def lost_updates(self) -> list[str]:
        """One line per object whose cloud twin differs from its latest spec: kind/name field: has ≠ wants."""
        lines = []
        for obj in self.objects:
            twins = self._twins.get(f"{obj['kind']}/{obj['metadata']['uid']}") or []
            if len(twins) != 1:
                continue  # missing or doubled: counted there
            has = _has(twins[0])
            for field, wanted in _wanted(obj).items():
                if has.get(field) != wanted:
                    name = f"{obj['kind']}/{obj['metadata']['name']}"
                    lines.append(f"{name} {field}: has {has.get(field)!r}, wants {wanted!r}")
        return lines

    def leaked(self) -> list[str]:
        """Cloud objects no Kubernetes object owns, and second twins of one object."""
        uids = {f"{o['kind']}/{o['metadata']['uid']}" for o in self.objects}
        lines = []
        for key, twins in self._twins.items():
            extra = twins if key not in uids else twins[1:]
            lines += [f"{key} {twin['uuid']}" for twin in extra]
        return lines

    def missing(self) -> list[str]:
        return [
            f"{o['kind']}/{o['metadata']['name']}"
            for o in self.objects
            if not self._twins.get(f"{o['kind']}/{o['metadata']['uid']}")
        ]

    def stranded(self) -> list[str]:
        """Objects not Ready at their current generation: kind/name, owner label, conditions."""
        lines = []
        for o in self.objects:
            status = o.get("status") or {}
            if is_ready(o) and status.get("observedGeneration") == o["metadata"].get("generation"):
                continue
            conditions = {c["type"]: f"{c['status']}/{c.get('reason')}" for c in status.get("conditions", [])}
            labels = o["metadata"].get("labels") or {}
            lines.append(f"{o['kind']}/{o['metadata']['name']} labels={labels} {conditions}")
        return lines


def acted_at_once(journal: Path) -> list[str]:
    """Objects that two processes wrote (cloud or status) while both had a handler running on them.

    A handler that merely runs — frozen, or waiting for a lock — does not
    act; one that writes does. Two handler runs of different processes on
    one object that overlap in time, each with a write inside the other's
    run, mean two replicas acted on the object at once. A run whose process
    was killed has no end: it lasts for ever, and only its writes count.
    """
    runs: dict[str, list[tuple[float, float, int, list[float]]]] = defaultdict(list)
    open_runs: dict[tuple[str, int], list[tuple[float, list[float]]]] = defaultdict(list)
    for line in journal.read_text().splitlines() if journal.exists() else []:
        entry = json.loads(line)
        key = (entry["uid"], entry["pid"])
        if entry["event"] == "start":
            open_runs[key].append((entry["t"], []))
        elif entry["event"] == "write" and open_runs[key]:
            open_runs[key][-1][1].append(entry["t"])
        elif entry["event"] == "end" and open_runs[key]:
            start, writes = open_runs[key].pop()
            runs[entry["uid"]].append((start, entry["t"], entry["pid"], writes))
    for (uid, pid), started in open_runs.items():
        runs[uid] += [(start, float("inf"), pid, writes) for start, writes in started]
    found = []
    for uid, spans in runs.items():
        for a, b in itertools.combinations(spans, 2):
            if a[2] == b[2] or not (a[0] < b[1] and b[0] < a[1]):
                continue
            if any(b[0] <= t <= b[1] for t in a[3]) and any(a[0] <= t <= a[1] for t in b[3]):
                found.append(uid)
                break
    return found


def regressions(log: list[dict[str, Any]], tag: str) -> list[str]:
    """Cloud objects to which a value of tag ``tag`` (an increasing number) was written after a newer one.

    From the simulator's change log (``/debug/log``), in the order the cloud
    applied the changes. The tests raise the tag with every wave of spec
    changes, so a lower value written later is an older spec written over a
    newer one: a lost update, even if it was set right again afterwards.
    """
    applied = sorted(
        (entry for entry in log if entry.get("outcome") == "ok" and entry.get("tags") is not None),
        key=lambda entry: entry["end"],
    )
    newest: dict[str, int] = {}
    found = []
    for entry in applied:
        value = entry["tags"].get(tag)
        if value is None or not str(value).isdigit():
            continue
        uuid = str(entry["uuid"])
        if int(value) < newest.get(uuid, 0):
            found.append(f"{entry['kind']} {uuid}: {tag} {value} written after {newest[uuid]}")
        newest[uuid] = max(newest.get(uuid, 0), int(value))
    return found
