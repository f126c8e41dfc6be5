"""Which objects count as never handled (the nudger's test of neglect)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from lb_operator.sharding.nudge import deletion_neglected, retry_overdue, unhandled


def test_an_object_without_a_status_is_unhandled() -> None:
    assert unhandled({"metadata": {"generation": 1}})


def test_an_object_reported_at_an_older_generation_is_unhandled() -> None:
    assert unhandled({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}})


def test_an_object_reported_at_its_generation_is_handled_whatever_its_readiness() -> None:
    assert not unhandled({"metadata": {"generation": 3}, "status": {"observedGeneration": 3}})


def test_an_object_being_deleted_is_left_to_its_finalizer() -> None:
    assert not unhandled({"metadata": {"generation": 3, "deletionTimestamp": "2026-11-23T00:00:00Z"}})


NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC)


def _delayed(when: str) -> dict[str, Any]:
    progress = json.dumps({"started": "2026-11-24T11:00:00", "delayed": when, "retries": 3})
    return {"metadata": {"generation": 1, "annotations": {"lboperator.dev/reconcile": progress}}}


def test_a_retry_kopf_scheduled_long_ago_and_never_ran_is_overdue() -> None:
    assert retry_overdue(_delayed("2026-11-24T11:59:00+00:00"), NOW, grace=30)
    assert retry_overdue(_delayed("2026-11-24T11:59:00"), NOW, grace=30)  # Kopf may write it naive (UTC)


def test_a_retry_still_ahead_or_just_due_is_not_overdue() -> None:
    assert not retry_overdue(_delayed("2026-11-24T12:00:30+00:00"), NOW, grace=30)
    assert not retry_overdue(_delayed("2026-11-24T11:59:50+00:00"), NOW, grace=30)


def test_no_progress_or_an_unreadable_one_is_not_overdue() -> None:
    assert not retry_overdue({"metadata": {"generation": 1}}, NOW, grace=30)
    broken = {"metadata": {"annotations": {"lboperator.dev/reconcile": "not json"}}}
    assert not retry_overdue(broken, NOW, grace=30)


def _deleting(
    annotations: dict[str, str] | None = None, finalizers: list[str] | None = None
) -> dict[str, Any]:
    metadata = {
        "generation": 1,
        "deletionTimestamp": "2026-11-24T11:00:00Z",
        "finalizers": ["lboperator.dev/finalizer"] if finalizers is None else finalizers,
        "annotations": annotations or {},
    }
    return {"metadata": metadata}


def test_a_deletion_with_no_retry_scheduled_is_neglected_one_with_a_retry_ahead_is_not() -> None:
    assert deletion_neglected(_deleting(), NOW, grace=30)  # no record: Kopf never came back to it
    ahead = json.dumps({"delayed": "2026-11-24T12:00:30+00:00", "retries": 1})
    assert not deletion_neglected(_deleting({"lboperator.dev/delete": ahead}), NOW, grace=30)
    overdue = json.dumps({"delayed": "2026-11-24T11:00:00+00:00", "retries": 1})
    assert deletion_neglected(_deleting({"lboperator.dev/delete": overdue}), NOW, grace=30)


def test_a_deletion_without_our_finalizer_is_not_ours_to_bring_back() -> None:
    assert not deletion_neglected(_deleting(finalizers=["someone.else/finalizer"]), NOW, grace=30)
    assert not deletion_neglected({"metadata": {"generation": 1}}, NOW, grace=30)
