"""What a handler makes of each way an attempt can end: a condition always, an Event once per cause.

The adapter here is a stand-in that raises what the test says: a bug in the
operator, or a refused token at a chosen moment, cannot be produced on
purpose through the real cloud. Events are collected instead of posted,
because posting needs a running Kopf.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import kopf
import pytest
from prometheus_client import REGISTRY

from lb_operator.cloud import Busy, Unauthorized
from lb_operator.handlers import registration
from lb_operator.reconcile.engine import Context, DeadlineExceeded, Outcome
from lb_operator.settings import OperatorSettings
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL


class Failing:
    """An adapter whose parent lookup raises ``error``."""

    kind = "LoadBalancer"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def parent_ref(self, obj: Any) -> None:
        return None

    async def parent(self, ctx: Context, obj: Any) -> None:
        raise self.error


def _body(conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "kind": "LoadBalancer",
        "metadata": {"namespace": "shop", "name": "web", "uid": "u-1", "generation": 1},
        "spec": {"zone": "lpg1"},
        "status": {"conditions": conditions or []},
    }


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(
        registration, "post_event", lambda obj, type_, reason, message: events.append((type_, reason))
    )
    return events


def _memo() -> kopf.Memo:
    settings = OperatorSettings(locking=False, sharding=False, cloud_url="http://127.0.0.1:9/v1")
    context = Context(cloud=None, mutex=None, settings=settings, resources=None)  # type: ignore[arg-type]
    return kopf.Memo(context=context)


async def _attempt(error: Exception, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setitem(registration.ADAPTERS, "LoadBalancer", Failing(error))
    patch: dict[str, Any] = {}
    with pytest.raises(kopf.TemporaryError):
        await registration._reconcile(body, patch, 0, _memo())  # type: ignore[arg-type]
    conditions: dict[str, Any] = {c["type"]: c for c in patch["status"]["conditions"]}
    return conditions


async def test_an_error_nobody_expected_ends_in_a_condition_an_event_and_a_retry(
    posted: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    conditions = await _attempt(KeyError("a bug"), _body(), monkeypatch)
    assert conditions["Synced"]["reason"] == "UnexpectedError"
    assert "KeyError" in conditions["Synced"]["message"]
    assert posted == [("Warning", "UnexpectedError")]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Unauthorized("list load balancers", 401, "Invalid token."), "Unauthorized"),
        (Busy("create pool", "load balancer busy", 409), "Busy"),
        (DeadlineExceeded("reading the cloud"), "DeadlineExceeded"),
        (aiohttp.ClientConnectionError("the API server restarts"), "KubernetesUnavailable"),
    ],
)
async def test_a_transient_problem_is_reported_once_not_on_every_retry(
    error: Exception, reason: str, posted: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _attempt(error, _body(), monkeypatch)
    assert first["Synced"]["reason"] == reason
    assert first["Synced"]["status"] == "False"
    assert posted == [("Warning", reason)]

    await _attempt(error, _body([first["Synced"]]), monkeypatch)  # the retry sees its own condition
    assert posted == [("Warning", reason)], "the same cause was posted twice"


def _checked(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    observed: int | None = 1,
    ready: str = "Synced",
    deleting: bool = False,
) -> dict[str, Any]:
    """A LoadBalancer as the drift-check timer sees it: handled at generation ``observed`` unless told."""
    body = _body([{"type": "Ready", "status": "True", "reason": ready}])
    metadata = body["metadata"]
    metadata["labels"] = labels or {}
    metadata["annotations"] = annotations or {}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    if observed is not None:
        body["status"]["observedGeneration"] = observed
    return body


@pytest.mark.parametrize(
    ("body", "shard", "due"),
    [
        (_checked(), None, True),
        (_checked({SHARD_LABEL: "me"}), "me", True),
        (_checked(observed=None), None, False),  # never handled yet
        (_checked(observed=0), None, False),  # its spec changed since
        (_checked(annotations={"lboperator.dev/reconcile": "{}"}), None, False),  # its handler retries
        (_checked(deleting=True), None, False),
        (_checked(ready="CloudRejected"), None, False),
        (_checked({SHARD_LABEL: "me", DRAIN_LABEL: "true"}), "me", False),  # being drained away
        (_checked({SHARD_LABEL: "other"}), "me", False),  # gone to another replica
        (_checked({}), "me", False),  # let go of
    ],
)
def test_the_drift_check_looks_only_at_settled_objects_of_this_replica(
    body: dict[str, Any], shard: str | None, due: bool
) -> None:
    assert registration.drift_check_due(body, shard) is due


async def test_a_degraded_load_balancer_is_a_warning_once_and_looked_at_again_later(
    posted: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def degraded(*_: Any, **__: Any) -> Outcome:
        return Outcome({"uuid": "lb-1", "cloudStatus": "error"}, False, "Degraded", "it is `error`")

    monkeypatch.setattr(registration.engine, "reconcile", degraded)
    patch: dict[str, Any] = {}
    with pytest.raises(kopf.TemporaryError) as retry:
        await registration._reconcile(_body(), patch, 0, _memo())  # type: ignore[arg-type]
    assert retry.value.delay == registration.DEGRADED_RECHECK
    assert posted == [("Warning", "Degraded")]
    counted = REGISTRY.get_sample_value(
        "lbop_reconciles_total", {"kind": "LoadBalancer", "trigger": "change", "outcome": "Degraded"}
    )
    assert counted is not None
    assert counted >= 1
    ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")

    with pytest.raises(kopf.TemporaryError):  # still degraded at the next look: no second Event
        await registration._reconcile(_body([ready]), {}, 1, _memo())  # type: ignore[arg-type]
    assert posted == [("Warning", "Degraded")]
