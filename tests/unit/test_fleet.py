"""The test and benchmark fleet: valid objects however large (bench-scale makes 770 load balancers)."""

from __future__ import annotations

import ipaddress

from lb_operator.testing.fleet import fleet


def test_a_fleet_past_255_load_balancers_has_valid_member_addresses() -> None:
    # Before: the 257th load balancer's members were 10.256.…, refused by the API server's validation.
    members = [o for o in fleet("ns", 770, 2, 3) if o["kind"] == "LoadBalancerPoolMember"]
    assert len(members) == 770 * 2 * 3
    for member in members:
        ipaddress.ip_address(member["spec"]["address"])
    # within a pool, every member has an address of its own
    by_pool: dict[str, set[str]] = {}
    for member in members:
        by_pool.setdefault(member["spec"]["poolRef"]["name"], set()).add(member["spec"]["address"])
    assert all(len(addresses) == 3 for addresses in by_pool.values())
