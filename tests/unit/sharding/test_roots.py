"""A load balancer's whole tree shares one root key; an orphan is keyed on itself until its parent comes."""

from __future__ import annotations

from typing import Any

from lb_operator.sharding.roots import root_of


def obj(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"namespace": "shop", "name": name}, "spec": spec}


POOL = obj("LoadBalancerPool", "web-http", loadBalancerRef={"name": "web"})
POOLS = {("shop", "web-http"): POOL}


def test_a_tree_shares_its_load_balancers_root() -> None:
    roots = {
        root_of(o, lambda ns, name: POOLS.get((ns, name)))
        for o in (
            obj("LoadBalancer", "web"),
            POOL,
            obj("LoadBalancerPoolMember", "m1", poolRef={"name": "web-http"}),
            obj("LoadBalancerListener", "l1", poolRef={"name": "web-http"}),
            obj("LoadBalancerHealthMonitor", "h1", poolRef={"name": "web-http"}),
        )
    }
    assert roots == {"shop/web"}


def test_a_child_whose_pool_is_missing_is_keyed_on_itself() -> None:
    member = obj("LoadBalancerPoolMember", "m1", poolRef={"name": "later"})
    assert root_of(member, lambda ns, name: None) == "shop/LoadBalancerPoolMember/m1"


def test_objects_naming_cloud_uuids_are_keyed_on_them() -> None:
    assert root_of(obj("LoadBalancerPool", "p", loadBalancerUUID="u1"), lambda ns, n: None) == "lb-uuid/u1"
    assert root_of(obj("LoadBalancerPoolMember", "m", poolUUID="p1"), lambda ns, n: None) == "pool-uuid/p1"
