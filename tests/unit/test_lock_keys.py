"""Which lock key a load balancer's tree is serialized on: one that exists before the cloud object,
and that no other tree can share."""

from __future__ import annotations

import re

import pytest

from lb_operator.cloud.models import LoadBalancer
from lb_operator.mutex import lease_name
from lb_operator.reconcile.engine import OBJECT_TAG, UID_TAG, family_key, family_of

UID = "5c0f3f53-9d0f-4a4f-8a55-3f8a0d6f0e11"
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


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


def test_a_load_balancer_object_is_locked_by_its_uid() -> None:
    assert family_key(UID) == f"lb/{UID}"
    assert lease_name(family_key(UID)) == f"lb.{UID}"


def test_a_cloud_load_balancer_we_made_is_locked_under_its_objects_uid() -> None:
    assert family_of(_cloud_lb({UID_TAG: UID, OBJECT_TAG: "shop.web"})) == family_key(UID)


def test_a_cloud_load_balancer_not_ours_is_locked_by_its_uuid() -> None:
    assert family_of(_cloud_lb({OBJECT_TAG: "shop.web"})) == "lb/8c6a0d4e-2d2b-4c8f-9b9a-5d1f3c2b1a00"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("lb/shop/prod-web", "lb/shop-prod/web"),  # namespace/name keys that met as lb-shop-prod-web
        ("lb/team-a/x", "lb/team/a-x"),
        ("member/a.b", "member/a-b"),
        ("pool/x", "pool-x"),
    ],
)
def test_keys_that_differ_only_in_punctuation_never_share_a_lease(one: str, other: str) -> None:
    assert lease_name(one) != lease_name(other)
    assert SUBDOMAIN.match(lease_name(one)), lease_name(one)
    assert SUBDOMAIN.match(lease_name(other)), lease_name(other)
