"""A Service of ``type: LoadBalancer`` as the five kinds: what this operator makes of it, as manifests.

Pure: the Service, the Nodes (or the Service's EndpointSlices) and the
operator's defaults in, the generated objects out, or ``BadService`` with
what to fix. Nothing is generated from a Service with a bad annotation, so
nothing is half-made.

Per Service: one LoadBalancer (``svc-<name>``); per Service port a pool, a
listener on the port and a health monitor (TCP, or UDP connect for a UDP
port), named ``svc-<name>-<port>`` (the port's name, or ``<protocol>-<port>``);
and the pool's members: each eligible Node's InternalIP with the port's
``nodePort`` (the default), or with ``lboperator.dev/members: endpoints``
each ready endpoint's address with its target port. The Service's
``loadBalancerSourceRanges`` become each listener's ``allowedCIDRs``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lb_operator.api import GROUP, VERSION

Body = Mapping[str, Any]

CLASS_PREFIX = f"{GROUP}/"
"""``spec.loadBalancerClass`` of a Service this operator serves: ``lboperator.dev/<backend>``."""
FINALIZER = f"{GROUP}/service-cleanup"
"""This operator's own finalizer on a Service: not ``service.kubernetes.io/load-balancer-cleanup``, which a
cloud controller manager in the same cluster strips from classed Services it deletes."""
SERVICE_LABEL = f"{GROUP}/service"
"""On every generated object: the name of the Service it was made for (in the same namespace)."""
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"

ANNOTATION_MEMBERS = f"{GROUP}/members"
ANNOTATION_MEMBER_SUBNET = f"{GROUP}/member-subnet"
ANNOTATION_ZONE = f"{GROUP}/zone"
ANNOTATION_FLAVOR = f"{GROUP}/flavor"
ANNOTATION_VIP_SUBNET = f"{GROUP}/vip-subnet"
ANNOTATION_ALGORITHM = f"{GROUP}/algorithm"
ANNOTATIONS = (
    ANNOTATION_MEMBERS,
    ANNOTATION_MEMBER_SUBNET,
    ANNOTATION_ZONE,
    ANNOTATION_FLAVOR,
    ANNOTATION_VIP_SUBNET,
    ANNOTATION_ALGORITHM,
)
ALGORITHMS = ("round_robin", "least_connections", "source_ip")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ZONE = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")


class BadService(ValueError):
    """The Service cannot be served as it is; the message says what to change."""


@dataclass(frozen=True)
class Defaults:
    """What a Service's annotations fall back to (the operator's ``LBOP_SERVICE_*`` settings)."""

    backend: str = "cloudscale"
    member_subnet: str | None = None
    zone: str | None = None
    vip_subnet: str | None = None


def service_class(backend: str) -> str:
    return f"{CLASS_PREFIX}{backend}"


def is_ours(service: Body, backend: str) -> bool:
    """Whether this operator serves ``service``: its class names this backend, whatever its type now
    (a Service that stops being ``type: LoadBalancer`` still has its tree to delete)."""
    return (service.get("spec") or {}).get("loadBalancerClass") == service_class(backend)


def wants_load_balancer(service: Body) -> bool:
    metadata = service.get("metadata") or {}
    return (service.get("spec") or {}).get("type") == "LoadBalancer" and "deletionTimestamp" not in metadata


def load_balancer_name(service: Body) -> str:
    return f"svc-{service['metadata']['name']}"


def eligible_nodes(nodes: Sequence[Body]) -> list[tuple[str, str]]:
    """(name, InternalIP) of the Nodes that take traffic: Ready, schedulable, not excluded by label."""
    chosen = []
    for node in nodes:
        metadata = node.get("metadata") or {}
        if EXCLUDE_LABEL in (metadata.get("labels") or {}):
            continue
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        status = node.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        address = next(
            (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None
        )
        if ready and address:
            chosen.append((str(metadata.get("name")), str(address)))
    return sorted(chosen)


def _endpoints(slices: Sequence[Body], port_name: str) -> list[tuple[str, int]]:
    """(address, port) of every ready endpoint behind the Service port named ``port_name``."""
    found: set[tuple[str, int]] = set()
    for piece in slices:
        number = next(
            (p.get("port") for p in piece.get("ports") or [] if (p.get("name") or "") == port_name), None
        )
        if number is None:
            continue
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                found.add((str(address), int(number)))
    return sorted(found)


def annotation(service: Body, key: str) -> str | None:
    """The Service's annotation ``key``, stripped; ``None`` when it has none."""
    value = ((service.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value).strip() if value is not None else None


def _port_key(port: Body) -> str:
    name = port.get("name")
    return str(name) if name else f"{str(port.get('protocol', 'TCP')).lower()}-{port['port']}"


def _member_name(pool: str, address: str, port: int) -> str:
    digest = hashlib.blake2b(f"{address}:{port}".encode(), digest_size=4).hexdigest()
    return f"{pool}-{digest}"


def generate(
    service: Body, defaults: Defaults, *, nodes: Sequence[Body] = (), slices: Sequence[Body] = ()
) -> list[dict[str, Any]]:
    """The objects ``service`` stands for; ``BadService`` if an annotation or the spec cannot be served."""
    metadata = service["metadata"]
    spec = service.get("spec") or {}
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    members_from = annotation(service, ANNOTATION_MEMBERS) or "nodes"
    if members_from not in ("nodes", "endpoints"):
        raise BadService(
            f"annotation {ANNOTATION_MEMBERS}: {members_from!r} is neither `nodes` nor `endpoints`"
        )
    subnet = annotation(service, ANNOTATION_MEMBER_SUBNET) or defaults.member_subnet
    if not subnet:
        raise BadService(
            f"no member subnet: annotate the Service with {ANNOTATION_MEMBER_SUBNET}: <subnet UUID>, or set "
            "the operator's LBOP_SERVICE_MEMBER_SUBNET (chart value services.memberSubnet)"
        )
    if not _UUID.match(subnet):
        raise BadService(f"annotation {ANNOTATION_MEMBER_SUBNET}: {subnet!r} is not a subnet UUID")
    algorithm = annotation(service, ANNOTATION_ALGORITHM) or "round_robin"
    if algorithm not in ALGORITHMS:
        raise BadService(
            f"annotation {ANNOTATION_ALGORITHM}: {algorithm!r} is not one of {', '.join(ALGORITHMS)}"
        )
    lb_spec: dict[str, Any] = {}
    zone = annotation(service, ANNOTATION_ZONE) or defaults.zone
    if zone:
        if not _ZONE.match(zone):
            raise BadService(f"annotation {ANNOTATION_ZONE}: {zone!r} is not a zone name")
        lb_spec["zone"] = zone
    elif defaults.backend == "cloudscale":
        raise BadService(
            f"no zone: annotate the Service with {ANNOTATION_ZONE}: <zone, e.g. lpg1>, or set the "
            "operator's LBOP_SERVICE_ZONE (chart value services.zone)"
        )
    flavor = annotation(service, ANNOTATION_FLAVOR)
    if flavor:
        lb_spec["flavor"] = flavor
    vip_subnet = annotation(service, ANNOTATION_VIP_SUBNET) or defaults.vip_subnet
    if vip_subnet:
        if not _UUID.match(vip_subnet):
            raise BadService(f"annotation {ANNOTATION_VIP_SUBNET}: {vip_subnet!r} is not a subnet UUID")
        lb_spec["vipAddresses"] = [{"subnetUUID": vip_subnet}]
    elif defaults.backend == "octavia":
        raise BadService(
            f"no VIP subnet: annotate the Service with {ANNOTATION_VIP_SUBNET}: <subnet UUID>, or set "
            "the operator's LBOP_SERVICE_VIP_SUBNET (chart value services.vipSubnet)"
        )
    ports = spec.get("ports") or []
    if not ports:
        raise BadService("the Service has no ports")
    for port in ports:
        if port.get("protocol", "TCP") not in ("TCP", "UDP"):
            raise BadService(f"port {_port_key(port)}: protocol {port.get('protocol')} is not TCP or UDP")
        if members_from == "nodes" and not port.get("nodePort"):
            raise BadService(
                f"port {_port_key(port)} has no nodePort (allocateLoadBalancerNodePorts: false?): annotate "
                f"{ANNOTATION_MEMBERS}: endpoints to send traffic to the pods instead"
            )

    ranges = [str(r).strip() for r in spec.get("loadBalancerSourceRanges") or []]
    for cidr in ranges:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise BadService(f"spec.loadBalancerSourceRanges: {cidr!r} is not a CIDR") from None
    allowed: dict[str, Any] = {"allowedCIDRs": ranges} if ranges else {}

    lb_name = load_balancer_name(service)
    owner = {
        "apiVersion": "v1",
        "kind": "Service",
        "name": name,
        "uid": str(metadata["uid"]),
        "controller": True,
        # No blockOwnerDeletion: it would need `update` on services/finalizers where the
        # OwnerReferencesPermissionEnforcement admission plugin runs, and the Service waits for its
        # tree through this operator's finalizer anyway.
    }

    def made(kind: str, object_name: str, object_spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {
                "name": object_name,
                "namespace": namespace,
                "labels": {SERVICE_LABEL: name},
                "ownerReferences": [owner],
            },
            "spec": object_spec,
        }

    objects = [made("LoadBalancer", lb_name, lb_spec)]
    nodes_in = eligible_nodes(nodes) if members_from == "nodes" else []
    for port in ports:
        udp = port.get("protocol", "TCP") == "UDP"
        protocol = "udp" if udp else "tcp"
        pool = f"{lb_name}-{_port_key(port)}"
        parent = {"poolRef": {"name": pool}}
        objects.append(
            made(
                "LoadBalancerPool",
                pool,
                {"loadBalancerRef": {"name": lb_name}, "algorithm": algorithm, "protocol": protocol},
            )
        )
        objects.append(
            made(
                "LoadBalancerListener",
                f"{pool}-listener",
                {**parent, "protocol": protocol, "protocolPort": int(port["port"]), **allowed},
            )
        )
        monitor: dict[str, Any] = {**parent, "type": "udp-connect" if udp else "tcp"}
        if udp:
            monitor |= {"delaySeconds": 3, "timeoutSeconds": 2}
        objects.append(made("LoadBalancerHealthMonitor", f"{pool}-monitor", monitor))
        if members_from == "nodes":
            targets = [(address, int(port["nodePort"])) for _, address in nodes_in]
        else:
            targets = _endpoints(slices, str(port.get("name") or ""))
        for address, number in targets:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                continue  # not an IP (an FQDN endpoint): nothing the cloud can send traffic to
            objects.append(
                made(
                    "LoadBalancerPoolMember",
                    _member_name(pool, address, number),
                    {**parent, "address": address, "protocolPort": number, "subnetUUID": subnet},
                )
            )
    return objects


def ingress(load_balancer: Body | None) -> list[dict[str, str]]:
    """``status.loadBalancer.ingress`` of the Service: the load balancer's VIPs once it is Ready."""
    if load_balancer is None:
        return []
    status = load_balancer.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not ready:
        return []
    return [{"ip": str(vip["address"])} for vip in status.get("vipAddresses") or [] if vip.get("address")]
