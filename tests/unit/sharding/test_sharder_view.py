"""The sharder's view: the mirror's objects, with its own writes' answers only while they are newer.

The mirror is fed by hand (no watch): the order of a watch event and a
write's answer on the event loop is what these cases are about, and the
real API server cannot be made to deliver them in a chosen order.
"""

from __future__ import annotations

from typing import Any

from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL
from lb_operator.sharding.sharder import Move, Sharder
from lb_operator.sharding.streams import Mirror


def _body(version: int, labels: dict[str, str], uid: str = "uid-a") -> dict[str, Any]:
    metadata = {
        "namespace": "shop",
        "name": "a",
        "uid": uid,
        "resourceVersion": str(version),
        "labels": labels,
    }
    return {"kind": "LoadBalancer", "metadata": metadata, "spec": {}}


def _sharder() -> tuple[Sharder, Mirror]:
    mirror = Mirror(None, ["shop"])
    return Sharder(object(), None, mirror), mirror  # type: ignore[arg-type]  # no API used


def _drain_move(version: int) -> Move:
    return Move("loadbalancers", "shop", "a", str(version), {DRAIN_LABEL: "true"}, "uid-a", "LoadBalancer")


def test_a_writes_answer_is_used_until_the_mirror_catches_up() -> None:
    sharder, mirror = _sharder()
    mirror._deliver("LoadBalancer", "ADDED", _body(3, {SHARD_LABEL: "old"}))
    sharder._remember(_drain_move(3), _body(4, {SHARD_LABEL: "old", DRAIN_LABEL: "true"}))

    assert [b["metadata"]["resourceVersion"] for b in sharder._view()] == ["4"]


def test_an_answer_seen_after_newer_news_from_the_mirror_never_hides_that_news() -> None:
    # The drain label lands (4), the old owner lets go at once (5), and the mirror delivers both before the
    # sharder's write coroutine takes its answer (4): the view must show 5, or the object stays unowned.
    sharder, mirror = _sharder()
    mirror._deliver("LoadBalancer", "ADDED", _body(3, {SHARD_LABEL: "old"}))
    mirror._deliver("LoadBalancer", "MODIFIED", _body(4, {SHARD_LABEL: "old", DRAIN_LABEL: "true"}))
    mirror._deliver("LoadBalancer", "MODIFIED", _body(5, {}))

    sharder._remember(_drain_move(3), _body(4, {SHARD_LABEL: "old", DRAIN_LABEL: "true"}))

    (seen,) = sharder._view()
    assert seen["metadata"]["resourceVersion"] == "5"
    assert sharder._newer == {}, "an answer older than the mirror is forgotten"


def test_what_the_mirror_no_longer_holds_is_forgotten() -> None:
    sharder, mirror = _sharder()
    mirror._deliver("LoadBalancer", "ADDED", _body(3, {}))
    sharder._remember(_drain_move(3), _body(4, {DRAIN_LABEL: "true"}))
    mirror._deliver("LoadBalancer", "DELETED", _body(6, {}))

    assert sharder._view() == []
    assert sharder._newer == {}
