"""A classed Service as the five kinds: what is generated, from which Nodes or endpoints, what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from lb_operator.services import translate
from lb_operator.services.translate import BadService, Defaults

SUBNET = "11111111-2222-3333-4444-555555555555"
DEFAULTS = Defaults(backend="cloudscale", member_subnet=SUBNET, zone="lpg1")


def _service(
    ports: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "annotations": annotations or {}},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "lboperator.dev/cloudscale",
            "ports": ports
            if ports is not None
            else [
                {"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080},
                {"name": "dns", "protocol": "UDP", "port": 53, "nodePort": 30053},
            ],
            **spec,
        },
    }


def _node(name: str, address: str, *, ready: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": extra.pop("labels", {})},
        "spec": extra,
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": address}],
        },
    }


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_two_ports_one_udp_become_a_tree_with_a_member_per_eligible_node() -> None:
    nodes = [
        _node("a", "10.0.0.1"),
        _node("b", "10.0.0.2", unschedulable=True),  # cordoned
        _node("c", "10.0.0.3", ready=False),
        _node("d", "10.0.0.4", labels={translate.EXCLUDE_LABEL: ""}),
        _node("e", "10.0.0.5"),
    ]
    objects = translate.generate(_service(), DEFAULTS, nodes=nodes)

    (lb,) = _by_kind(objects, "LoadBalancer")
    assert lb["metadata"]["name"] == "svc-web"
    assert lb["spec"] == {"zone": "lpg1"}
    pools = {p["metadata"]["name"]: p["spec"]["protocol"] for p in _by_kind(objects, "LoadBalancerPool")}
    assert pools == {"svc-web-http": "tcp", "svc-web-dns": "udp"}
    listeners = {
        (li["spec"]["poolRef"]["name"], li["spec"]["protocol"], li["spec"]["protocolPort"])
        for li in _by_kind(objects, "LoadBalancerListener")
    }
    assert listeners == {("svc-web-http", "tcp", 80), ("svc-web-dns", "udp", 53)}
    monitors = {
        m["spec"]["poolRef"]["name"]: m["spec"]["type"]
        for m in _by_kind(objects, "LoadBalancerHealthMonitor")
    }
    assert monitors == {"svc-web-http": "tcp", "svc-web-dns": "udp-connect"}
    members = {
        (
            m["spec"]["poolRef"]["name"],
            m["spec"]["address"],
            m["spec"]["protocolPort"],
            m["spec"]["subnetUUID"],
        )
        for m in _by_kind(objects, "LoadBalancerPoolMember")
    }
    assert members == {
        ("svc-web-http", "10.0.0.1", 30080, SUBNET),
        ("svc-web-http", "10.0.0.5", 30080, SUBNET),
        ("svc-web-dns", "10.0.0.1", 30053, SUBNET),
        ("svc-web-dns", "10.0.0.5", 30053, SUBNET),
    }
    for made in objects:  # owned by the Service, labelled with its name, in its namespace
        assert made["metadata"]["namespace"] == "shop"
        assert made["metadata"]["labels"] == {translate.SERVICE_LABEL: "web"}
        assert made["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_members_from_endpoints_take_ready_pod_addresses_and_target_ports() -> None:
    slices = [
        {
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353}],
            "endpoints": [
                {"addresses": ["10.244.0.7"], "conditions": {"ready": True}},
                {"addresses": ["10.244.0.8"], "conditions": {"ready": False}},
            ],
        }
    ]
    service = _service(annotations={translate.ANNOTATION_MEMBERS: "endpoints"})
    objects = translate.generate(service, DEFAULTS, slices=slices)
    members = {
        (m["spec"]["address"], m["spec"]["protocolPort"]) for m in _by_kind(objects, "LoadBalancerPoolMember")
    }
    assert members == {("10.244.0.7", 8080), ("10.244.0.7", 5353)}


def test_annotations_override_the_operators_defaults() -> None:
    other = "99999999-2222-3333-4444-555555555555"
    service = _service(
        annotations={
            translate.ANNOTATION_MEMBER_SUBNET: other,
            translate.ANNOTATION_ZONE: "rma1",
            translate.ANNOTATION_ALGORITHM: "least_connections",
        }
    )
    objects = translate.generate(service, DEFAULTS, nodes=[_node("a", "10.0.0.1")])
    assert _by_kind(objects, "LoadBalancer")[0]["spec"]["zone"] == "rma1"
    assert {p["spec"]["algorithm"] for p in _by_kind(objects, "LoadBalancerPool")} == {"least_connections"}
    assert {m["spec"]["subnetUUID"] for m in _by_kind(objects, "LoadBalancerPoolMember")} == {other}


@pytest.mark.parametrize(
    ("annotations", "defaults", "says"),
    [
        ({translate.ANNOTATION_MEMBER_SUBNET: "not-a-uuid"}, DEFAULTS, "is not a subnet UUID"),
        ({}, Defaults(backend="cloudscale", zone="lpg1"), "LBOP_SERVICE_MEMBER_SUBNET"),
        ({}, Defaults(backend="cloudscale", member_subnet=SUBNET), "LBOP_SERVICE_ZONE"),
        ({}, Defaults(backend="octavia", member_subnet=SUBNET), "LBOP_SERVICE_VIP_SUBNET"),
        ({translate.ANNOTATION_MEMBERS: "pods"}, DEFAULTS, "neither `nodes` nor `endpoints`"),
        ({translate.ANNOTATION_ALGORITHM: "random"}, DEFAULTS, "is not one of"),
    ],
)
def test_a_bad_annotation_or_missing_default_generates_nothing_and_says_what_to_fix(
    annotations: dict[str, str], defaults: Defaults, says: str
) -> None:
    with pytest.raises(BadService, match=says):
        translate.generate(_service(annotations=annotations), defaults, nodes=[_node("a", "10.0.0.1")])


def test_a_port_without_a_node_port_or_of_another_protocol_is_refused() -> None:
    with pytest.raises(BadService, match="no nodePort"):
        translate.generate(_service([{"protocol": "TCP", "port": 80}]), DEFAULTS)
    with pytest.raises(BadService, match="SCTP"):
        translate.generate(_service([{"protocol": "SCTP", "port": 80, "nodePort": 30080}]), DEFAULTS)


def test_only_its_own_class_is_ours_and_ingress_waits_for_ready() -> None:
    assert translate.is_ours(_service(), "cloudscale")
    assert not translate.is_ours(_service(), "octavia")
    assert not translate.is_ours(_service(loadBalancerClass="example.com/other"), "cloudscale")
    unclassed = _service()
    del unclassed["spec"]["loadBalancerClass"]
    assert not translate.is_ours(unclassed, "cloudscale")

    building = {
        "status": {
            "vipAddresses": [{"address": "192.0.2.7"}],
            "conditions": [{"type": "Ready", "status": "False"}],
        }
    }
    ready = {
        "status": {
            "vipAddresses": [{"address": "192.0.2.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    assert translate.ingress(None) == []
    assert translate.ingress(building) == []
    assert translate.ingress(ready) == [{"ip": "192.0.2.7"}]


def test_source_ranges_become_the_listeners_allowed_cidrs_and_a_bad_one_is_refused() -> None:
    objects = translate.generate(
        _service(loadBalancerSourceRanges=["192.0.2.0/24"]), DEFAULTS, nodes=[_node("a", "10.0.0.1")]
    )
    assert {tuple(li["spec"]["allowedCIDRs"]) for li in _by_kind(objects, "LoadBalancerListener")} == {
        ("192.0.2.0/24",)
    }
    for made in objects:
        assert "blockOwnerDeletion" not in made["metadata"]["ownerReferences"][0]
    with pytest.raises(BadService, match="loadBalancerSourceRanges"):
        translate.generate(_service(loadBalancerSourceRanges=["nope"]), DEFAULTS)
