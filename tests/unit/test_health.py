"""``/healthz``: it fails while the replica cannot see or reach the API server, and only then.

The watches' signs of life are given directly (a half-open connection cannot
be made on cue in a unit test; the chaos suite black-holes a real replica
through toxiproxy and sees its ``/healthz`` fail and recover).
"""

from __future__ import annotations

import asyncio

import kopf
import pytest

from lb_operator.handlers import lifecycle
from lb_operator.health import WatchHealth
from lb_operator.reconcile.engine import Context
from lb_operator.settings import OperatorSettings


def _memo(health: WatchHealth) -> kopf.Memo:
    settings = OperatorSettings(cloud_url="http://127.0.0.1:9/v1", identity="a")
    context = Context(cloud=None, mutex=None, settings=settings, resources=None, health=health)  # type: ignore[arg-type]
    return kopf.Memo(context=context)


async def test_a_watch_silent_past_its_bound_fails_the_probe_and_one_that_speaks_again_passes() -> None:
    health = WatchHealth()
    health.alive("parents loadbalancers *", bound=0.05)
    assert await lifecycle.on_probe(_memo(health)) == {"watches": "live"}

    await asyncio.sleep(0.1)  # longer than its bound, with no sign of life
    with pytest.raises(lifecycle.Blind, match="parents loadbalancers"):
        await lifecycle.on_probe(_memo(health))

    health.alive("parents loadbalancers *", bound=0.05)
    assert await lifecycle.on_probe(_memo(health)) == {"watches": "live"}


async def test_a_watch_stopped_on_purpose_is_not_taken_for_silent() -> None:
    health = WatchHealth()
    health.alive("sharder loadbalancers *", bound=0.01)
    health.forget("sharder loadbalancers *")  # this replica stepped down as sharder
    await asyncio.sleep(0.05)
    assert health.stale() == {}
