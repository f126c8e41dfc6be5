"""Manifests of a whole fleet of load balancers with their children, for tests, the demo and benchmarks."""

from __future__ import annotations

import os
from typing import Any

import yaml

from lb_operator.api import GROUP, VERSION

SUBNET = "0b0a8d4c-44b8-4c6f-8c3e-1d2f3a4b5c6d"
OCTAVIA_SUBNET = "5f6e0a44-5b0f-4b4e-9a43-8a0f4e6b1c2d"
"""The VIP subnet of Octavia fleets (``testing.octavia.SUBNET``: the no-op network driver takes any)."""


def _object(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def fleet(
    namespace: str,
    load_balancers: int,
    pools: int,
    members: int,
    *,
    zone: str | None = "lpg1",
    vip_subnet: str | None = None,
) -> list[dict[str, Any]]:
    """``load_balancers`` x ``pools`` x (``members`` members + 1 listener + 1 health monitor).

    cloudscale's load balancers name a ``zone``; Octavia's a VIP subnet (``zone=None, vip_subnet=…``).
    With ``LBOP_TEST_BACKEND=octavia`` (the suites run against Octavia) the default is Octavia's shape.
    """
    if os.environ.get("LBOP_TEST_BACKEND") == "octavia" and zone == "lpg1" and vip_subnet is None:
        zone, vip_subnet = None, OCTAVIA_SUBNET
    objects = []
    lb_spec: dict[str, Any] = {"tags": {"fleet": "demo"}}
    if zone is not None:
        lb_spec["zone"] = zone
    if vip_subnet is not None:
        lb_spec["vipAddresses"] = [{"subnetUUID": vip_subnet}]
    for lb in range(load_balancers):
        lb_name = f"lb{lb}"
        objects.append(_object("LoadBalancer", lb_name, namespace, lb_spec))
        for pool in range(pools):
            pool_name = f"{lb_name}-pool{pool}"
            objects.append(
                _object(
                    "LoadBalancerPool",
                    pool_name,
                    namespace,
                    {"loadBalancerRef": {"name": lb_name}, "algorithm": "round_robin", "protocol": "tcp"},
                )
            )
            parent = {"poolRef": {"name": pool_name}}
            for member in range(members):
                spec = {
                    **parent,
                    # 10.<lb>.<pool>.<10+member>; past 255 load balancers the second octet wraps and the
                    # pool's octet moves up by 16 per wrap (members of different pools may share one).
                    "address": f"10.{lb % 256}.{pool + 16 * (lb // 256)}.{member + 10}",
                    "protocolPort": 8080,
                    "subnetUUID": SUBNET,
                }
                objects.append(_object("LoadBalancerPoolMember", f"{pool_name}-m{member}", namespace, spec))
            listener = {**parent, "protocolPort": 80 + pool}
            objects.append(_object("LoadBalancerListener", f"{pool_name}-listener", namespace, listener))
            monitor = {**parent, "type": "http", "http": {"urlPath": "/healthz"}}
            objects.append(_object("LoadBalancerHealthMonitor", f"{pool_name}-monitor", namespace, monitor))
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
