"""The faults and change log that ``tools/octavia/serve.py`` adds in front of Octavia, for the chaos suite.

The fault suite (``tests/chaos/test_faults.py``) runs on Octavia only if
these do what the simulator's do: a 500 that Octavia never saw, an answer
lost while the change still lands, a log of what was applied with its tags.
"""

from __future__ import annotations

import asyncio
import urllib.error
from collections.abc import Iterator

import pytest

from lb_operator.cloud import Busy
from lb_operator.cloud.models import LoadBalancerSpec, VipAddressSpec
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.testing.octavia import SUBNET, OctaviaProcess
from lb_operator.testing.processes import wait_for

pytestmark = pytest.mark.integration

NO_FAULTS = {"fault_500": 0.0, "fault_hang": 0.0, "fault_lost": 0.0, "methods": []}


@pytest.fixture
def faulty(octavia: OctaviaProcess) -> Iterator[OctaviaProcess]:
    """The module's Octavia, its faults set back to none afterwards."""
    yield octavia
    octavia.set_faults(**NO_FAULTS)


def _spec(uid: str) -> LoadBalancerSpec:
    vip = VipAddressSpec(subnet=SUBNET)
    return LoadBalancerSpec(name=f"lb-{uid}", vip_addresses=[vip], tags={"uid": uid})


async def test_an_injected_500_is_busy_and_octavia_never_saw_the_request(
    faulty: OctaviaProcess, client: OctaviaClient
) -> None:
    before = faulty.stats()
    faulty.set_faults(fault_500=1.0, methods=["POST"])
    with pytest.raises(Busy) as raised:
        await client.create_load_balancer(_spec("five-hundred"))
    assert raised.value.status == 500
    faulty.set_faults(**NO_FAULTS)
    after = faulty.stats()
    assert after["faults"].get("500", 0) == before["faults"].get("500", 0) + 1
    assert after["mutations"] == before["mutations"], "the faulted request reached Octavia"
    assert await client.list_load_balancers({"uid": "five-hundred"}) == []


async def test_a_lost_answer_is_busy_yet_the_change_lands_and_is_logged_with_its_tags(
    faulty: OctaviaProcess, client: OctaviaClient
) -> None:
    faulty.set_faults(fault_lost=1.0, methods=["POST"])
    with pytest.raises(Busy) as raised:
        await client.create_load_balancer(_spec("lost"))
    assert raised.value.status == 504
    faulty.set_faults(**NO_FAULTS)
    landed = lambda: any(lb["tags"].get("uid") == "lost" for lb in faulty.list("load-balancers"))  # noqa: E731
    await asyncio.to_thread(wait_for, "the lost creation to land", landed, 10, 0.05)  # behind the 504
    (created,) = await client.list_load_balancers({"uid": "lost"})
    logged = [entry for entry in faulty.log() if entry["uuid"] == created.uuid]
    assert [(e["kind"], e["op"], e["outcome"]) for e in logged] == [("load_balancer", "create", "ok")]
    assert logged[0]["tags"]["uid"] == "lost"
    assert faulty.stats()["faults"].get("lost", 0) >= 1


def test_fault_settings_that_cannot_be_are_refused_and_change_nothing(faulty: OctaviaProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        faulty.set_faults(fault_500=0.7, fault_lost=0.7)
    assert raised.value.code == 400
    with pytest.raises(urllib.error.HTTPError):
        faulty.set_faults(methods=["FETCH"])
    assert faulty.set_faults() == {**NO_FAULTS, "hang_seconds": 30.0}
