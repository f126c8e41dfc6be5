"""Which lock key a load balancer's tree is serialized on: one that exists before the cloud object."""

from __future__ import annotations

import pytest

from lb_operator.cloud.models import LoadBalancer
from lb_operator.mutex import lease_name
from lb_operator.reconcile.engine import OBJECT_TAG, family_key, family_of


def _cloud_lb(tags: dict[str, str]) -> LoadBalancer:
    return LoadBalancer.model_validate(
        {
            "uuid": "8c6a0d4e-2d2b-4c8f-9b9a-5d1f3c2b1a00",
            "name": "web",
            "flavor": {"slug": "lb-standard"},
            "zone": {"slug": "lpg1"},
            "status": "running",
            "tags": tags,
        }
    )


def test_a_load_balancer_object_is_locked_by_namespace_and_name() -> None:
    assert family_key("shop", "web") == "lb/shop/web"
    assert lease_name(family_key("shop", "web")) == "lb-shop-web"


def test_a_cloud_load_balancer_we_made_is_locked_under_its_objects_family() -> None:
    assert family_of(_cloud_lb({OBJECT_TAG: "shop.web.v2"})) == family_key("shop", "web.v2")


@pytest.mark.parametrize("tags", [{}, {OBJECT_TAG: "no-dot"}, {OBJECT_TAG: ".x"}, {OBJECT_TAG: "ns."}])
def test_a_cloud_load_balancer_not_ours_is_locked_by_its_uuid(tags: dict[str, str]) -> None:
    assert family_of(_cloud_lb(tags)) == "lb/8c6a0d4e-2d2b-4c8f-9b9a-5d1f3c2b1a00"
