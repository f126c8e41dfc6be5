"""Services of ``type: LoadBalancer`` with this operator's class: their tree, members, ingress, deletion.

Real parts: the API server allocates the nodePorts; kube-controller-manager
(garbage collection, EndpointSlices) runs in the test control plane; Nodes
are ordinary objects (no kubelet), made Ready in their status.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import ON_OCTAVIA, is_ready, wait_for

from lb_operator.services.translate import ANNOTATION_MEMBER_SUBNET as MEMBER_SUBNET
from lb_operator.services.translate import ANNOTATION_MEMBERS as MEMBERS
from lb_operator.services.translate import FINALIZER, SERVICE_LABEL
from lb_operator.sharding import SHARD_LABEL
from lb_operator.testing import Cluster
from lb_operator.testing.fleet import OCTAVIA_SUBNET, SUBNET
from lb_operator.testing.replicas import ReplicaFleet

CLASS = "lboperator.dev/octavia" if ON_OCTAVIA else "lboperator.dev/cloudscale"
PLACE = {"service_vip_subnet": OCTAVIA_SUBNET} if ON_OCTAVIA else {"service_zone": "lpg1"}
"""The class of this suite's backend, and where its load balancers go (cloudscale: a zone; Octavia: a VIP
subnet), as the operator's defaults."""

LEASE = 5


def _kubectl(cluster: Cluster, *args: str, input: str | None = None) -> str:
    done = cluster.kubectl(*args, input=input)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _node(name: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"lbop-test": "services"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test"}],
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        },
    }


@pytest.fixture
def nodes(crds: Cluster) -> Iterator[dict[str, str]]:
    """Two Ready Nodes (name → InternalIP); every Node a test made is deleted after it."""
    tag = uuid.uuid4().hex[:5]
    made = {f"node-{tag}-{n}": f"10.77.0.{n + 1}" for n in range(2)}
    for name, address in made.items():
        _kubectl(crds, "create", "-f", "-", input=yaml.safe_dump(_node(name, address)))
    yield made
    crds.kubectl("delete", "nodes", "-l", "lbop-test=services", "--wait=false")


def _service(
    name: str,
    namespace: str,
    service_class: str | None,
    ports: int = 2,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "selector": {"app": name},
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
            {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353},
        ][:ports],
    }
    if service_class is not None:
        spec["loadBalancerClass"] = service_class
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
    }


def _get(cluster: Cluster, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(_kubectl(cluster, "get", *args, "-o", "json"))
    return found


def _generated(fleet: ReplicaFleet, service: str) -> list[dict[str, Any]]:
    return [o for o in fleet.objects() if (o["metadata"].get("labels") or {}).get(SERVICE_LABEL) == service]


def _cloud_members(fleet: ReplicaFleet) -> set[tuple[str, int]]:
    members = set()
    for pool in fleet.simulator.list("load-balancers/pools"):
        for member in fleet.simulator.list(f"load-balancers/pools/{pool['uuid']}/members"):
            members.add((member["address"], member["protocol_port"]))
    return members


def _wanted_members(
    cluster: Cluster, service: str, namespace: str, addresses: list[str]
) -> set[tuple[str, int]]:
    ports = _get(cluster, "service", service, "-n", namespace)["spec"]["ports"]
    return {(address, port["nodePort"]) for address in addresses for port in ports}


def _reasons(cluster: Cluster, namespace: str, service: str) -> list[str]:
    events = _get(cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={service}")
    return [e["reason"] for e in events["items"] if e["involvedObject"].get("kind") == "Service"]


def test_a_classed_service_gets_its_tree_members_follow_the_nodes_and_deletion_empties_the_cloud(
    crds: Cluster, logs: Path, nodes: dict[str, str]
) -> None:
    fleet = ReplicaFleet(
        crds,
        logs,
        lease_duration=LEASE,
        shutdown_grace=1,
        service_member_subnet=SUBNET,
        **PLACE,
    )
    try:
        for n in range(2):
            fleet.start(f"operator-{n}")
        ns = fleet.namespace
        served_kinds = lambda: crds.kubectl("get", "lboperator", "-n", ns).returncode == 0  # noqa: E731
        wait_for("kubectl to know the kinds' category", served_kinds, 30)
        manifests = [
            _service("web", ns, CLASS),
            _service("plain", ns, None),  # no class: a cloud controller manager's, not ours
            _service("other", ns, "example.com/another"),
            _service("api", ns, CLASS, ports=1),
            _service("bad", ns, CLASS, annotations={MEMBER_SUBNET: "not-a-uuid"}),
        ]
        _kubectl(crds, "apply", "-f", "-", input=yaml.safe_dump_all(manifests))

        # A tree of 1 + 2 x 3 objects plus a member per Node and port, all Ready; the ingress in status.
        def served() -> bool:
            made = _generated(fleet, "web")
            return len(made) == 1 + 2 * 3 + 2 * 2 and all(is_ready(o) for o in made)

        wait_for("the Service's tree to be Ready", served, 120, interval=0.5)
        wait_for("the second Service's tree", lambda: len(_generated(fleet, "api")) == 1 + 3 + 2, 60, 0.5)
        wait_for(
            "the Service's ingress",
            lambda: bool(
                _get(crds, "service", "web", "-n", ns)["status"].get("loadBalancer", {}).get("ingress")
            ),
            60,
            interval=0.5,
        )
        web = _get(crds, "service", "web", "-n", ns)
        (lb,) = [lb for lb in fleet.simulator.list("load-balancers") if lb["name"].endswith("svc-web")]
        ingress = [i["ip"] for i in web["status"]["loadBalancer"]["ingress"]]
        assert ingress == [vip["address"] for vip in lb["vip_addresses"]]
        assert FINALIZER in web["metadata"]["finalizers"]
        # The second Service stops being a LoadBalancer: its tree goes, and with it its finalizer.
        _kubectl(crds, "patch", "service", "api", "-n", ns, "-p", '{"spec": {"type": "ClusterIP"}}')
        wait_for("the second Service's tree to go", lambda: _generated(fleet, "api") == [], 60, 0.5)
        wait_for(
            "the second Service's finalizer to go",
            lambda: (
                FINALIZER not in (_get(crds, "service", "api", "-n", ns)["metadata"].get("finalizers") or [])
            ),
            60,
            0.5,
        )
        assert [lb["name"] for lb in fleet.simulator.list("load-balancers")] == [lb["name"]]

        pools = {p["protocol"] for p in fleet.simulator.list("load-balancers/pools")}
        listeners = {
            (li["protocol"], li["protocol_port"]) for li in fleet.simulator.list("load-balancers/listeners")
        }
        assert pools == {"tcp", "udp"}
        assert listeners == {("tcp", 80), ("udp", 53)}
        assert _cloud_members(fleet) == _wanted_members(crds, "web", ns, list(nodes.values()))
        assert {"EnsuringLoadBalancer", "EnsuredLoadBalancer"} <= set(_reasons(crds, ns, "web"))
        # A bad annotation: said in a condition and an Event, and nothing is made.
        bad = _get(crds, "service", "bad", "-n", ns)
        (condition,) = [c for c in bad["status"].get("conditions", []) if c["type"] == "LoadBalancerSynced"]
        assert (condition["status"], condition["reason"]) == ("False", "SyncLoadBalancerFailed")
        assert MEMBER_SUBNET in condition["message"]
        assert "SyncLoadBalancerFailed" in _reasons(crds, ns, "bad")
        assert _generated(fleet, "bad") == []
        for ignored in ("plain", "other"):  # left alone: nothing made, no finalizer, no status
            assert _generated(fleet, ignored) == []
            service = _get(crds, "service", ignored, "-n", ns)
            assert FINALIZER not in (service["metadata"].get("finalizers") or [])
            assert not service["status"].get("loadBalancer", {}).get("ingress")

        # A third Node joins: its members are made. Its owner is killed meanwhile: the survivor goes on.
        owner = {(o["metadata"].get("labels") or {}).get(SHARD_LABEL) for o in _generated(fleet, "web")}
        assert len(owner) == 1
        third = f"{next(iter(nodes))[:-2]}-2"
        _kubectl(crds, "create", "-f", "-", input=yaml.safe_dump(_node(third, "10.77.0.3")))
        fleet.kill(owner.pop())
        addresses = [*nodes.values(), "10.77.0.3"]
        wait_for(
            "members for the third Node",
            lambda: _cloud_members(fleet) == _wanted_members(crds, "web", ns, addresses),
            120,
            interval=0.5,
        )

        # A Node that leaves takes its members with it.
        _kubectl(crds, "delete", "node", third)
        addresses.remove("10.77.0.3")
        wait_for(
            "the deleted Node's members to go",
            lambda: _cloud_members(fleet) == _wanted_members(crds, "web", ns, addresses),
            120,
            interval=0.5,
        )

        # A cordoned Node takes no traffic: its members go.
        first = next(iter(nodes))
        _kubectl(crds, "patch", "node", first, "-p", '{"spec": {"unschedulable": true}}')
        addresses.remove(nodes[first])
        wait_for(
            "the cordoned Node's members to go",
            lambda: _cloud_members(fleet) == _wanted_members(crds, "web", ns, addresses),
            120,
            interval=0.5,
        )
        assert fleet.simulator.stats()["overlaps"] == 0

        # An edit to a generated object is set back.
        listener = next(o for o in _generated(fleet, "web") if o["kind"] == "LoadBalancerListener")
        name = listener["metadata"]["name"]
        _kubectl(
            crds,
            "patch",
            "lblistener",
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec": {"protocolPort": 8081}}',
        )
        wait_for(
            "the edited listener to be set back",
            lambda: (
                _get(crds, "lblistener", name, "-n", ns)["spec"]["protocolPort"]
                == listener["spec"]["protocolPort"]
            ),
            60,
            interval=0.5,
        )

        # The Service's deletion empties the cloud, then lets the Service go.
        _kubectl(crds, "delete", "service", "web", "-n", ns, "--wait=false")
        wait_for(
            "the Service to be gone",
            lambda: crds.kubectl("get", "service", "web", "-n", ns).returncode != 0,
            120,
            0.5,
        )
        assert _generated(fleet, "web") == []
        assert fleet.simulator.list("load-balancers") == []
        assert {"DeletingLoadBalancer", "DeletedLoadBalancer"} <= set(_reasons(crds, ns, "web"))
        assert fleet.simulator.stats()["overlaps"] == 0
    finally:
        fleet.stop()


def _pod(name: str, namespace: str, app: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "example.invalid/app:1"}]},
    }


def test_members_from_endpoints_follow_the_endpoint_slices_the_controller_writes(
    crds: Cluster, logs: Path, nodes: dict[str, str]
) -> None:
    fleet = ReplicaFleet(crds, logs, service_member_subnet=SUBNET, **PLACE)
    try:
        fleet.start("operator-0")
        ns = fleet.namespace
        node = next(iter(nodes))
        service = _service("ep", ns, CLASS, ports=1, annotations={MEMBERS: "endpoints"})
        pods = [_pod(f"ep-{n}", ns, "ep", node) for n in range(2)]
        _kubectl(crds, "apply", "-f", "-", input=yaml.safe_dump_all([service, *pods]))
        # No kubelet: the test plays its part, a pod's IP and readiness in its status.
        for n in range(2):
            status = {
                "status": {
                    "phase": "Running",
                    "podIP": f"10.244.1.{n + 5}",
                    "podIPs": [{"ip": f"10.244.1.{n + 5}"}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
            }
            _kubectl(
                crds,
                "patch",
                "pod",
                f"ep-{n}",
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps(status),
            )

        # kube-controller-manager's EndpointSlice controller lists the ready pods; they become members.
        wanted = {("10.244.1.5", 8080), ("10.244.1.6", 8080)}
        wait_for("members for the ready pods", lambda: _cloud_members(fleet) == wanted, 120, interval=0.5)
        slices = _get(crds, "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=ep")["items"]
        assert slices, "the EndpointSlice controller wrote no slice"
        assert [o["metadata"]["name"] for o in fleet.objects() if o["kind"] == "LoadBalancerPoolMember"]

        # A pod that is not ready any more leaves the slice's ready endpoints, and the pool.
        unready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        _kubectl(
            crds,
            "patch",
            "pod",
            "ep-1",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(unready),
        )
        wait_for(
            "the unready pod's member to go",
            lambda: _cloud_members(fleet) == {("10.244.1.5", 8080)},
            120,
            0.5,
        )
        assert fleet.simulator.stats()["overlaps"] == 0
    finally:
        fleet.stop()
