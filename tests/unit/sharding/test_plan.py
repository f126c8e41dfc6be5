"""The sharder's decisions, one rule each: assign, move at once from the dead, drain from the living."""

from __future__ import annotations

from typing import Any

from lb_operator.sharding import DRAIN_LABEL, FINALIZER, SHARD_LABEL
from lb_operator.sharding.ring import owner
from lb_operator.sharding.sharder import plan


def lb(name: str, **labels: str) -> dict[str, Any]:
    return {
        "kind": "LoadBalancer",
        "metadata": {"namespace": "shop", "name": name, "resourceVersion": "7", "labels": labels},
        "spec": {},
    }


MEMBERS = {"a", "b", "c"}
OWNER = owner("shop/web", MEMBERS)
OTHER = sorted(MEMBERS - {OWNER})[0]


def test_nothing_is_written_without_members() -> None:
    assert plan([lb("web")], set()) == []


def test_an_unassigned_object_gets_its_owner() -> None:
    [move] = plan([lb("web")], MEMBERS)
    assert (move.plural, move.name, move.resource_version) == ("loadbalancers", "web", "7")
    assert move.labels == {SHARD_LABEL: OWNER, DRAIN_LABEL: None}


def test_an_object_of_a_gone_member_moves_at_once_without_a_drain() -> None:
    [move] = plan([lb("web", **{SHARD_LABEL: "gone", DRAIN_LABEL: "true"})], MEMBERS)
    assert move.labels == {SHARD_LABEL: OWNER, DRAIN_LABEL: None}


def test_an_object_of_a_live_member_it_no_longer_hashes_to_is_asked_to_drain() -> None:
    [move] = plan([lb("web", **{SHARD_LABEL: OTHER})], MEMBERS)
    assert move.labels == {DRAIN_LABEL: "true"}


def test_a_draining_object_waits_for_its_owner_to_let_go() -> None:
    assert plan([lb("web", **{SHARD_LABEL: OTHER, DRAIN_LABEL: "true"})], MEMBERS) == []


def test_a_drain_is_called_off_when_the_object_hashes_back() -> None:
    [move] = plan([lb("web", **{SHARD_LABEL: OWNER, DRAIN_LABEL: "true"})], MEMBERS)
    assert move.labels == {DRAIN_LABEL: None}


def test_an_object_where_it_belongs_is_left_alone() -> None:
    assert plan([lb("web", **{SHARD_LABEL: OWNER})], MEMBERS) == []


def test_only_what_can_move_an_object_calls_for_a_pass() -> None:
    from lb_operator.sharding.sharder import _placement

    base = lb("web", **{SHARD_LABEL: OWNER})
    with_status = {**base, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    relabelled = lb("web", **{SHARD_LABEL: OTHER})
    reparented = {**base, "spec": {"loadBalancerRef": {"name": "other"}}}
    assert _placement(with_status) == _placement(base)
    assert _placement(relabelled) != _placement(base)
    assert _placement(reparented) != _placement(base)


def test_an_object_gets_kopfs_finalizer_with_its_first_owner_in_the_same_write() -> None:
    body = lb("web")
    body["metadata"]["finalizers"] = ["someone.else/finalizer"]
    [move] = plan([body], MEMBERS)
    assert move.finalizers == ["someone.else/finalizer", FINALIZER]  # the whole list: a merge patch


def test_a_finalizer_already_there_or_an_object_being_deleted_gets_none() -> None:
    there = lb("web", **{SHARD_LABEL: "gone"})
    there["metadata"]["finalizers"] = [FINALIZER]
    deleting = lb("web")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T08:00:00Z"
    drained = lb("web", **{SHARD_LABEL: OTHER})
    assert [move.finalizers for move in plan([there, deleting, drained], MEMBERS)] == [None, None, None]


def test_parents_are_labelled_before_their_children() -> None:
    member = {
        "kind": "LoadBalancerPoolMember",
        "metadata": {"namespace": "shop", "name": "m", "resourceVersion": "7"},
        "spec": {"poolRef": {"name": "p"}},
    }
    pool = {
        "kind": "LoadBalancerPool",
        "metadata": {"namespace": "shop", "name": "p", "resourceVersion": "7"},
        "spec": {"loadBalancerRef": {"name": "web"}},
    }
    moves = plan([member, pool, lb("web"), lb("api")], MEMBERS)
    assert [move.name for move in moves] == ["web", "api", "p", "m"]
