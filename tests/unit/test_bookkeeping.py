"""Kopf's bookkeeping kept in the fenced status: when an object is at rest, and what Kopf would write."""

from __future__ import annotations

from typing import Any, cast

import kopf
import pytest

from lb_operator.handlers.bookkeeping import HandledInStatus, UnmarkedProgress, handled


def _condition(kind: str, ok: bool, reason: str, generation: int) -> dict[str, Any]:
    status = "True" if ok else "False"
    return {"type": kind, "status": status, "reason": reason, "observedGeneration": generation}


def _body(generation: int, observed: int | None, *conditions: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "lboperator.dev/v1alpha1",
        "kind": "LoadBalancerPool",
        "metadata": {"name": "p", "namespace": "ns", "generation": generation, "labels": {"a": "b"}},
        "spec": {"algorithm": "round_robin"},
        "status": status,
    }


def _kopf(body: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, body))


READY = _condition("Ready", True, "InSync", 2)
SYNCED = _condition("Synced", True, "Reconciled", 2)
WAITING = _condition("Synced", False, "ParentNotReady", 2)
FAILED = _condition("Synced", False, "CloudError", 2)
REJECTED = (_condition("Ready", False, "CloudRejected", 2), _condition("Synced", False, "CloudRejected", 2))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_body(2, 2, READY, SYNCED), True),
        # a new generation, not yet handled
        (_body(3, 2, READY, SYNCED), False),
        # the status of the new generation is in progress: a retry is pending, Kopf must keep it
        (_body(2, 2, _condition("Ready", False, "Building", 2), SYNCED), False),
        (_body(2, 2, _condition("Ready", False, "ParentNotReady", 2), WAITING), False),
        (_body(2, 2, _condition("Ready", False, "Degraded", 2), SYNCED), False),
        # Ready kept from before while this generation's attempt failed for now
        (_body(2, 2, _condition("Ready", True, "InSync", 1), FAILED), False),
        (_body(2, 2, READY, _condition("Synced", False, "KubernetesUnavailable", 2)), False),
        # refused by the cloud for good: only a new generation changes that
        (_body(2, 2, *REJECTED), True),
        (_body(3, 3, *REJECTED), False),
        # never handled
        (_body(1, None), False),
    ],
)
def test_an_object_is_at_rest_only_when_its_status_says_its_generation_was_handled(
    body: dict[str, Any], expected: bool
) -> None:
    assert handled(body) is expected
    fetched = HandledInStatus().fetch(body=_kopf(body))
    assert (fetched is not None) is expected
    if expected:  # Kopf compares it with the object's essence: equal, so no change to handle
        assert fetched == HandledInStatus().build(body=_kopf(body))


def test_the_diff_base_adds_nothing_to_kopfs_patch() -> None:
    body = _kopf(_body(2, 2, READY, SYNCED))
    patch = kopf.Patch()
    storage = HandledInStatus()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch


def test_a_first_try_success_leaves_kopfs_patch_empty_and_a_retry_records_its_progress() -> None:
    body = _kopf(_body(1, None))
    storage = UnmarkedProgress()
    record: kopf.ProgressRecord = {"started": "2026-12-03T00:00:00", "success": True, "retries": 1}
    patch = kopf.Patch()
    storage.store(key=kopf.HandlerId("reconcile"), record=record, body=body, patch=patch)
    storage.purge(key=kopf.HandlerId("reconcile"), body=body, patch=patch)
    assert not patch  # before: the kopf-managed marker stayed, one write per object

    retrying = kopf.Patch()
    failed: kopf.ProgressRecord = {**record, "success": False}
    storage.store(key=kopf.HandlerId("reconcile"), record=failed, body=body, patch=retrying)
    assert list(retrying["metadata"]["annotations"]) == ["lboperator.dev/reconcile"]


def test_an_object_whose_change_handler_has_a_retry_pending_is_not_at_rest() -> None:
    # The change ended (its status says handled) while Kopf's retry of its handler was on its way:
    # Kopf must still run that retry, which takes the result and clears Kopf's record.
    body = _body(2, 2, READY, SYNCED)
    body["metadata"]["annotations"] = {"lboperator.dev/reconcile": '{"retries": 1, "success": false}'}
    assert not handled(body)
    assert HandledInStatus().fetch(body=_kopf(body)) is None
    body["metadata"]["annotations"] = {"lboperator.dev/delete": "{}", "other.example/x": "y"}
    assert handled(body), "only the change handler's own record keeps the object from rest"
