"""Which load balancer an object belongs to, so that a whole tree lands on one replica.

The root key comes from the spec alone, without the cloud: a LoadBalancer
and everything naming it by reference share ``<namespace>/<name>``. An
object whose parent is not there yet is keyed on itself, and moves when the
parent appears; objects naming a cloud load balancer or pool by UUID are
keyed on that UUID.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Body = Mapping[str, Any]
FindPool = Callable[[str, str], Body | None]
"""Look up a LoadBalancerPool by (namespace, name); ``None`` if there is none."""


def root_of(body: Body, find_pool: FindPool) -> str:
    """The root key of ``body``: its load balancer's, or its own while its parent is unknown."""
    kind = str(body.get("kind"))
    metadata = body.get("metadata") or {}
    namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
    spec = body.get("spec") or {}
    if kind == "LoadBalancer":
        return f"{namespace}/{name}"
    if kind == "LoadBalancerPool":
        ref = spec.get("loadBalancerRef")
        return f"{namespace}/{ref['name']}" if ref else f"lb-uuid/{spec.get('loadBalancerUUID')}"
    ref = spec.get("poolRef")
    if ref:
        pool = find_pool(namespace, str(ref["name"]))
        return root_of(pool, find_pool) if pool is not None else f"{namespace}/{kind}/{name}"
    return f"pool-uuid/{spec.get('poolUUID')}"
