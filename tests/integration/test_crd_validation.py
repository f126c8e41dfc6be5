"""The API server itself refuses what the cloud would refuse: admission-time validation of the CRDs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lb_operator.testing import Cluster

SUBNET = "0b0a8d4c-44b8-4c6f-8c3e-1d2f3a4b5c6d"
POOL_UUID = "7d0f9a3e-2b1c-4d5e-8f6a-9b8c7d6e5f4a"


def _manifest(kind: str, name: str, namespace: str, spec: dict[str, object]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "lboperator.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


VALID = [
    ("LoadBalancer", {"zone": "lpg1"}),
    ("LoadBalancer", {}),  # whether a zone is needed is the backend's to say (cloudscale: yes; Octavia: no)
    ("LoadBalancer", {"zone": "rma1", "vipAddresses": [{"subnetUUID": SUBNET, "address": "10.0.0.5"}]}),
    (
        "LoadBalancer",
        {"zone": "rma1", "vipAddresses": [{"address": "10.0.0.6"}]},
    ),  # the cloud finds its subnet
    ("LoadBalancerPool", {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}),
    (
        "LoadBalancerPoolMember",
        {"poolUUID": POOL_UUID, "address": "2001:db8::1", "protocolPort": 80, "subnetUUID": SUBNET},
    ),
    (
        "LoadBalancerListener",
        {"poolRef": {"name": "p"}, "protocolPort": 443, "allowedCIDRs": ["192.0.2.0/24"]},
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "http", "http": {"urlPath": "/healthz"}},
    ),
    ("LoadBalancerPool", {"loadBalancerRef": {"name": "dns"}, "algorithm": "round_robin", "protocol": "udp"}),
    ("LoadBalancerListener", {"poolRef": {"name": "dns"}, "protocol": "udp", "protocolPort": 53}),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "dns"}, "type": "udp-connect", "delaySeconds": 3, "timeoutSeconds": 2},
    ),
]

INVALID = [
    ("LoadBalancer", {"zone": "LPG 1"}, "spec.zone: Invalid value"),
    (
        "LoadBalancer",
        {"zone": "lpg1", "vipAddresses": [{}]},
        "give a VIP's subnetUUID, its address, or both",
    ),
    (
        "LoadBalancer",
        {"zone": "lpg1", "vipAddresses": [{"subnetUUID": "not-a-uuid"}]},
        "spec.vipAddresses[0].subnetUUID: Invalid value",
    ),
    (
        "LoadBalancer",
        {"zone": "lpg1", "vipAddresses": [{"subnetUUID": SUBNET, "address": "10.0.0.300"}]},
        "must be an IPv4 or IPv6 address",
    ),
    (
        "LoadBalancerPool",
        {"algorithm": "round_robin", "protocol": "tcp"},
        "set exactly one of loadBalancerRef",
    ),
    (
        "LoadBalancerPool",
        {
            "loadBalancerRef": {"name": "a"},
            "loadBalancerUUID": POOL_UUID,
            "algorithm": "round_robin",
            "protocol": "tcp",
        },
        "set exactly one of loadBalancerRef",
    ),
    (
        "LoadBalancerPool",
        {"loadBalancerRef": {"name": "a"}, "algorithm": "random", "protocol": "tcp"},
        'spec.algorithm: Unsupported value: "random"',
    ),
    (
        "LoadBalancerPool",
        {"loadBalancerRef": {"name": "a"}, "algorithm": "round_robin", "protocol": "sctp"},
        'spec.protocol: Unsupported value: "sctp"',
    ),
    (
        "LoadBalancerPoolMember",
        {"poolRef": {"name": "p"}, "address": "10.0.0.1", "protocolPort": 0, "subnetUUID": SUBNET},
        "spec.protocolPort: Invalid value: 0",
    ),
    (
        "LoadBalancerPoolMember",
        {"poolRef": {"name": "p"}, "address": "10.0.0.1", "protocolPort": 70000, "subnetUUID": SUBNET},
        "spec.protocolPort: Invalid value: 70000",
    ),
    (
        "LoadBalancerPoolMember",
        {"poolRef": {"name": "p"}, "address": "backend.example", "protocolPort": 80, "subnetUUID": SUBNET},
        "must be an IPv4 or IPv6 address",
    ),
    (
        "LoadBalancerPoolMember",
        {"poolRef": {"name": "p"}, "address": "10.0.0.1", "protocolPort": 80},
        "spec.subnetUUID: Required value",
    ),
    (
        "LoadBalancerListener",
        {"poolRef": {"name": "p"}, "protocolPort": 80, "protocol": "sctp"},
        'spec.protocol: Unsupported value: "sctp"',
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "udp-connect"},  # the default delay of 2 s is too short
        "a udp-connect monitor needs delaySeconds of at least 3",
    ),
    (
        "LoadBalancerListener",
        {"poolRef": {"name": "p"}, "protocolPort": 80, "allowedCIDRs": ["10.0.0.0/33"]},
        "must be a CIDR",
    ),
    (
        "LoadBalancerListener",
        {"poolRef": {"name": "p"}, "protocolPort": 80, "timeoutClientDataMs": 0},
        "spec.timeoutClientDataMs: Invalid value: 0",
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "dns"},
        'spec.type: Unsupported value: "dns"',
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "tcp", "http": {"urlPath": "/"}},
        "http options need type http or https",
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "tcp", "delaySeconds": 2, "timeoutSeconds": 5},
        "timeoutSeconds must not exceed delaySeconds",
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "http", "http": {"expectedCodes": ["2xx"]}},
        "spec.http.expectedCodes[0]: Invalid value",
    ),
    (
        "LoadBalancerHealthMonitor",
        {"poolRef": {"name": "p"}, "type": "tcp", "upThreshold": 11},
        "spec.upThreshold: Invalid value: 11",
    ),
]


@pytest.mark.parametrize(("kind", "spec"), VALID, ids=[f"{k}-{i}" for i, (k, _) in enumerate(VALID)])
def test_valid_objects_are_accepted(
    crds: Cluster, namespace: str, kind: str, spec: dict[str, object]
) -> None:
    applied = crds.kubectl("apply", "-f", "-", input=_manifest(kind, "ok", namespace, spec))
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize(
    ("kind", "spec", "message"), INVALID, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(INVALID)]
)
def test_invalid_objects_are_rejected_with_a_useful_message(
    crds: Cluster, namespace: str, kind: str, spec: dict[str, object], message: str
) -> None:
    applied = crds.kubectl("apply", "-f", "-", input=_manifest(kind, "bad", namespace, spec))
    assert applied.returncode != 0, f"{kind} {spec} was accepted"
    assert message in applied.stderr


@pytest.mark.parametrize(
    ("kind", "spec", "change", "message"),
    [
        ("LoadBalancer", {"zone": "lpg1"}, {"zone": "rma1"}, "zone is immutable: the cloud cannot move"),
        (
            "LoadBalancer",
            {"zone": "lpg1"},
            {"vipAddresses": [{"subnetUUID": SUBNET}]},
            "vipAddresses is immutable",
        ),
        (
            "LoadBalancerPool",
            {"loadBalancerRef": {"name": "a"}, "algorithm": "round_robin", "protocol": "tcp"},
            {"algorithm": "source_ip"},
            "algorithm is immutable",
        ),
        (
            "LoadBalancerPool",
            {"loadBalancerRef": {"name": "a"}, "algorithm": "round_robin", "protocol": "tcp"},
            {"loadBalancerRef": {"name": "b"}},
            "loadBalancerRef is immutable",
        ),
        (
            "LoadBalancerPoolMember",
            {"poolRef": {"name": "p"}, "address": "10.0.0.1", "protocolPort": 80, "subnetUUID": SUBNET},
            {"address": "10.0.0.2"},
            "address is immutable",
        ),
        (
            "LoadBalancerHealthMonitor",
            {"poolRef": {"name": "p"}, "type": "http"},
            {"type": "tcp"},
            "type is immutable",
        ),
    ],
)
def test_fields_the_cloud_cannot_change_are_immutable(
    crds: Cluster, namespace: str, kind: str, spec: dict[str, object], change: dict[str, object], message: str
) -> None:
    created = crds.kubectl("apply", "-f", "-", input=_manifest(kind, "fixed", namespace, spec))
    assert created.returncode == 0, created.stderr
    changed = crds.kubectl("apply", "-f", "-", input=_manifest(kind, "fixed", namespace, {**spec, **change}))
    assert changed.returncode != 0, f"changing {change} was accepted"
    assert message in changed.stderr
    assert "delete the object and create a new one" in changed.stderr


def test_mutable_fields_can_change(crds: Cluster, namespace: str) -> None:
    spec = {"zone": "lpg1", "cloudName": "before", "tags": {"team": "a"}}
    assert (
        crds.kubectl("apply", "-f", "-", input=_manifest("LoadBalancer", "m", namespace, spec)).returncode
        == 0
    )
    changed = crds.kubectl(
        "apply", "-f", "-", input=_manifest("LoadBalancer", "m", namespace, {**spec, "cloudName": "after"})
    )
    assert changed.returncode == 0, changed.stderr


def test_kubectl_get_lboperator_lists_every_kind(crds: Cluster, namespace: str) -> None:
    manifests = [_manifest(kind, f"all-{i}", namespace, spec) for i, (kind, spec) in enumerate(VALID)]
    applied = crds.kubectl("apply", "-f", "-", input="---\n".join(manifests))
    assert applied.returncode == 0, applied.stderr
    listed = crds.kubectl("get", "lboperator", "-n", namespace, "-o", "name")
    kinds = {line.split("/")[0].split(".")[0] for line in listed.stdout.split()}
    assert kinds == {
        "loadbalancer",
        "loadbalancerpool",
        "loadbalancerpoolmember",
        "loadbalancerlistener",
        "loadbalancerhealthmonitor",
    }
    explained = crds.kubectl("explain", "lb.spec.zone")
    assert "Zone to create the load balancer in" in explained.stdout


def test_the_documented_examples_are_valid(crds: Cluster, namespace: str) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "basic"
    applied = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(examples))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == 5
