"""Which objects count as never handled (the nudger's test of neglect)."""

from __future__ import annotations

from lb_operator.sharding.nudge import unhandled


def test_an_object_without_a_status_is_unhandled() -> None:
    assert unhandled({"metadata": {"generation": 1}})


def test_an_object_reported_at_an_older_generation_is_unhandled() -> None:
    assert unhandled({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}})


def test_an_object_reported_at_its_generation_is_handled_whatever_its_readiness() -> None:
    assert not unhandled({"metadata": {"generation": 3}, "status": {"observedGeneration": 3}})


def test_an_object_being_deleted_is_left_to_its_finalizer() -> None:
    assert not unhandled({"metadata": {"generation": 3, "deletionTimestamp": "2026-11-23T00:00:00Z"}})
