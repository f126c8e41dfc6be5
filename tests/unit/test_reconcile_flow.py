"""The reconcile flow against the simulator, in process: deadlines, settling, a parent gone, drift,
and the proof of ownership before every cloud mutation.

No Kubernetes here: objects are read through a small fake reader (the API
server cannot be made to return a stale parent, or an object that moved
between two reads, on purpose), and locking is off (the integration tests
cover the Lease mutex with the flow).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from fake_leases import MakeMutex
from pydantic import SecretStr

from lb_operator.cloud import Busy, CloudscaleClient, CloudscaleSettings
from lb_operator.cloud.models import LoadBalancerSpec, LoadBalancerUpdate, MemberUpdate
from lb_operator.reconcile import engine
from lb_operator.reconcile.engine import Context, DeadlineExceeded, NoLongerOurs, ParentNotReady
from lb_operator.reconcile.kinds import ADAPTERS
from lb_operator.reconcile.resources import Resource
from lb_operator.reconcile.snapshot import CloudSnapshot
from lb_operator.settings import OperatorSettings
from lb_operator.simulator import Simulator, SimulatorSettings
from lb_operator.simulator.gate import Change

TOKEN = "flow-token"
READY = {"conditions": [{"type": "Ready", "status": "True"}]}


@dataclass
class Parents:
    """A reader of objects (the reconciled one and its parents) that answers what the test put in."""

    objects: dict[tuple[str, str, str], Resource] = field(default_factory=dict)

    async def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self.objects.get((kind, namespace, name))

    def have(self, obj: Resource) -> None:
        """``obj`` exists in Kubernetes, unless the test said otherwise about it already."""
        self.objects.setdefault((obj.kind, obj.namespace, obj.name), obj)


def resource(
    kind: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any] | None = None
) -> Resource:
    return Resource(kind, "shop", name, f"uid-{name}", 1, dict(spec), dict(status or {}))


@dataclass
class Flow:
    sim: Simulator
    cloud: CloudscaleClient
    parents: Parents
    ctx: Context
    events: list[tuple[str, str, str]]

    def deadline(self, seconds: float) -> float:
        return asyncio.get_running_loop().time() + seconds

    async def reconcile(
        self, obj: Resource, seconds: float = 10, resync: bool = False, exists: bool = True
    ) -> engine.Outcome:
        if exists:
            self.parents.have(obj)
        return await engine.reconcile(
            ADAPTERS[obj.kind], self.ctx, obj, self.deadline(seconds), resync=resync
        )

    async def running_lb(self, name: str = "web") -> Resource:
        """A LoadBalancer object, made and Ready, registered as a parent."""
        obj = resource("LoadBalancer", name, {"zone": "lpg1"})
        outcome = await self.reconcile(obj)
        assert outcome.ready
        ready = resource("LoadBalancer", name, obj.spec, {**outcome.status, **READY})
        self.parents.objects[("LoadBalancer", "shop", name)] = ready
        return ready


@pytest.fixture
async def flow() -> AsyncIterator[Flow]:
    sim_settings = SimulatorSettings(latency=0.02, lb_ready_delay=0.3, token=SecretStr(TOKEN))
    async with Simulator(sim_settings) as sim:
        cloud_settings = CloudscaleSettings(base_url=sim.url, token=SecretStr(TOKEN), request_timeout=30)
        async with CloudscaleClient(cloud_settings) as cloud:
            parents = Parents()
            events: list[tuple[str, str, str]] = []
            settings = OperatorSettings(cloud_url=sim.url, locking=False, sharding=False, ready_poll=0.1)
            ctx = Context(
                cloud=cloud,
                mutex=None,
                settings=settings,
                resources=parents,  # type: ignore[arg-type]  # duck-typed reader of parents
                events=lambda obj, type_, reason, message: events.append((obj.name, reason, message)),
            )
            yield Flow(sim, cloud, parents, ctx, events)


async def test_a_new_load_balancer_is_ready_in_the_attempt_that_made_it(flow: Flow) -> None:
    outcome = await flow.reconcile(resource("LoadBalancer", "web", {"zone": "lpg1"}))
    assert outcome.ready, outcome  # waited under the lock until `running`: its children can start now
    assert outcome.status["cloudStatus"] == "running"


async def test_a_child_is_not_sent_while_its_load_balancer_is_changing(flow: Flow) -> None:
    made = await flow.cloud.create_load_balancer(LoadBalancerSpec(name="busy", zone="lpg1"))
    # The Kubernetes object already says Ready (stale): the cloud still builds the load balancer.
    flow.parents.objects[("LoadBalancer", "shop", "busy")] = resource(
        "LoadBalancer", "busy", {"zone": "lpg1"}, {"uuid": made.uuid, **READY}
    )
    pool = resource(
        "LoadBalancerPool",
        "p",
        {"loadBalancerRef": {"name": "busy"}, "algorithm": "round_robin", "protocol": "tcp"},
    )
    outcome = await flow.reconcile(pool)
    assert outcome.ready
    assert flow.sim.stats()["overlaps"] == 0  # it waited for `running` instead of colliding (409)


async def test_a_child_under_a_load_balancer_gone_from_the_cloud_waits_and_sends_nothing(flow: Flow) -> None:
    # It waits instead of failing for good; and nothing is sent, for Octavia answers a creation under
    # a deleted load balancer 409, which reads as "busy", not "gone".
    lb = await flow.running_lb()
    await flow.cloud.delete_load_balancer(str(lb.status["uuid"]))  # gone behind the operator's back
    flow.sim.faults.configure(fault_500=1.0, methods=["POST", "PATCH", "DELETE"])  # a request would say so
    pool = resource(
        "LoadBalancerPool",
        "p",
        {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"},
    )
    with pytest.raises(ParentNotReady, match="parent is gone"):
        await flow.reconcile(pool, seconds=2)
    assert flow.sim.stats()["faults"] == {}, "a change was sent under a load balancer known to be gone"


async def test_a_hung_request_ends_with_the_attempts_deadline(flow: Flow) -> None:
    lb = await flow.running_lb()
    flow.sim.faults.configure(fault_hang=1.0, methods=["PATCH"])
    renamed = resource("LoadBalancer", "web", {"zone": "lpg1", "cloudName": "renamed"}, lb.status)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeadlineExceeded, match="changing the LoadBalancer"):
        await flow.reconcile(renamed, seconds=1.0)
    # The client's own bound is 30 s and the hang 30 s: only the attempt's deadline can have ended it.
    assert loop.time() - started < 10


async def test_a_drifted_member_is_set_back_and_reported(flow: Flow) -> None:
    await flow.running_lb()
    pool_spec = {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}
    made = await flow.reconcile(resource("LoadBalancerPool", "p", pool_spec))
    flow.parents.objects[("LoadBalancerPool", "shop", "p")] = resource(
        "LoadBalancerPool", "p", pool_spec, {**made.status, **READY}
    )
    spec = {"poolRef": {"name": "p"}, "address": "10.0.0.1", "protocolPort": 80, "subnetUUID": SUBNET}
    member = await flow.reconcile(resource("LoadBalancerPoolMember", "m", spec))
    pool, uuid = str(made.status["uuid"]), str(member.status["uuid"])
    await flow.cloud.update_member(pool, uuid, MemberUpdate(name="edited-in-the-console", enabled=False))
    checked = resource("LoadBalancerPoolMember", "m", spec, member.status)
    flow.parents.objects[("LoadBalancerPoolMember", "shop", "m")] = checked  # as Kubernetes has it

    again = await flow.reconcile(checked, resync=True)

    current = await flow.cloud.get_member(pool, uuid)
    assert (current.name, current.enabled) == ("shop-m", True)
    assert again.status["uuid"] == uuid
    assert (
        "m",
        "DriftCorrected",
        "the cloud differed from the spec in: enabled, name; set back",
    ) in flow.events


async def test_a_drift_check_leaves_alone_an_object_another_replica_owns_now(flow: Flow) -> None:
    lb = await flow.running_lb()
    flow.ctx = dataclasses.replace(flow.ctx, shard="operator-0")
    await flow.cloud.update_load_balancer(str(lb.status["uuid"]), LoadBalancerUpdate(name="edited"))
    # Kopf's timer still has the body from before the move; Kubernetes has the new owner's label.
    flow.parents.objects[("LoadBalancer", "shop", "web")] = dataclasses.replace(lb, shard="operator-1")
    before = flow.sim.stats()["mutations"]

    with pytest.raises(NoLongerOurs):
        await flow.reconcile(dataclasses.replace(lb, shard="operator-0"), resync=True)

    assert flow.sim.stats()["mutations"] == before, "it corrected drift on an object not its own"


async def test_in_sync_the_drift_check_changes_nothing(flow: Flow) -> None:
    lb = await flow.running_lb()
    before = flow.sim.stats()["mutations"]
    outcome = await flow.reconcile(resource("LoadBalancer", "web", {"zone": "lpg1"}, lb.status), resync=True)
    assert outcome.ready
    assert flow.sim.stats()["mutations"] == before
    assert not [e for e in flow.events if e[1] == "DriftCorrected"]


SUBNET = "0b0a8d4c-44b8-4c6f-8c3e-1d2f3a4b5c6d"


async def test_a_built_load_balancer_stays_ready_while_a_change_under_it_is_applied(flow: Flow) -> None:
    lb = await flow.running_lb()
    uuid = str(lb.status["uuid"])
    change = Change(uuid, "pool", "create", None, arrived=asyncio.get_running_loop().time())
    await flow.sim.gate.enter(change)  # a change under the load balancer is being applied
    try:
        assert (await flow.cloud.get_load_balancer(uuid)).status == "changing"
        outcome = await flow.reconcile(lb, resync=True)
    finally:
        flow.sim.gate.leave(change, "ok")
    assert outcome.ready, outcome  # not `Provisioning`: its children must not stop
    assert outcome.status["cloudStatus"] == "changing"


async def test_an_object_never_made_is_created_not_reported_as_drift(flow: Flow) -> None:
    new = resource("LoadBalancer", "new", {"zone": "lpg1"})
    flow.parents.objects[("LoadBalancer", "shop", "new")] = new  # it exists in Kubernetes
    await flow.reconcile(new, resync=True)
    assert [reason for _, reason, _ in flow.events] == ["Created"]


async def test_a_load_balancer_created_is_an_event_a_child_created_is_not(flow: Flow) -> None:
    await flow.running_lb()
    pool_spec = {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}
    made = await flow.reconcile(resource("LoadBalancerPool", "p", pool_spec))
    assert made.status["uuid"]
    assert [(name, reason) for name, reason, _ in flow.events] == [("web", "Created")]


async def test_an_object_gone_from_the_cloud_is_re_created_and_reported_as_drift(flow: Flow) -> None:
    lb = await flow.running_lb()
    await flow.cloud.delete_load_balancer(str(lb.status["uuid"]))
    outcome = await flow.reconcile(lb, resync=True)
    assert outcome.status["uuid"] != lb.status["uuid"]
    assert flow.events[-1] == (
        "web",
        "DriftCorrected",
        "the LoadBalancer was gone from the cloud; re-created it",
    )


@pytest.mark.parametrize("state", ["being deleted", "gone"])
async def test_a_drift_check_never_re_creates_what_is_being_deleted(flow: Flow, state: str) -> None:
    lb = await flow.running_lb()
    await flow.cloud.delete_load_balancer(str(lb.status["uuid"]))  # as its delete handler just did
    ref = ("LoadBalancer", "shop", "web")
    if state == "gone":
        del flow.parents.objects[ref]
    else:
        flow.parents.objects[ref] = dataclasses.replace(lb, deleting=True)

    with pytest.raises(NoLongerOurs):  # the check read the object before the deletion began
        await flow.reconcile(lb, resync=True, exists=False)

    assert flow.sim.stats()["objects"]["load_balancers"] == 0


@pytest.mark.parametrize("cidrs", [["10.0.0.5/24", "1.1.1.1"], ["2001:db8::1/64", "192.0.2.0/24"]])
async def test_a_listener_in_sync_sends_no_change_whatever_form_its_cidrs_are_written_in(
    flow: Flow, cidrs: list[str]
) -> None:
    await flow.running_lb()
    pool_spec = {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}
    made = await flow.reconcile(resource("LoadBalancerPool", "p", pool_spec))
    flow.parents.objects[("LoadBalancerPool", "shop", "p")] = resource(
        "LoadBalancerPool", "p", pool_spec, {**made.status, **READY}
    )
    spec = {"poolRef": {"name": "p"}, "protocolPort": 80, "allowedCIDRs": cidrs}
    listener = await flow.reconcile(resource("LoadBalancerListener", "l", spec))
    stored = (await flow.cloud.get_listener(str(listener.status["uuid"]))).allowed_cidrs
    assert stored != cidrs, "the simulator no longer normalizes CIDRs: this test proves nothing"
    before = flow.sim.stats()["mutations"]

    again = await flow.reconcile(resource("LoadBalancerListener", "l", spec, listener.status))

    assert again.ready
    assert flow.sim.stats()["mutations"] == before, "an in-sync listener was changed"


async def test_a_load_balancer_gets_a_vip_given_by_its_address_alone(flow: Flow) -> None:
    spec = {"zone": "lpg1", "vipAddresses": [{"address": "10.0.0.7"}]}
    outcome = await flow.reconcile(resource("LoadBalancer", "private", spec))
    assert outcome.ready
    vips = outcome.status["vipAddresses"]
    assert [v["address"] for v in vips] == ["10.0.0.7"]
    assert vips[0]["subnetUUID"], "the cloud names the subnet it found"


@pytest.mark.parametrize("cloud_status", ["error", "degraded"])
async def test_a_load_balancer_in_error_says_so_and_its_children_are_still_reconciled(
    flow: Flow, cloud_status: str
) -> None:
    lb = await flow.running_lb()
    flow.sim.store.set_status(str(lb.status["uuid"]), cloud_status)  # e.g. all its members went down

    outcome = await flow.reconcile(lb)
    assert not outcome.ready
    assert outcome.reason == "Degraded"
    assert cloud_status in outcome.message
    degraded = resource("LoadBalancer", "web", lb.spec, {**outcome.status, **_condition(False, "Degraded")})
    flow.parents.objects[("LoadBalancer", "shop", "web")] = degraded

    pool_spec = {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}
    pool = await flow.reconcile(resource("LoadBalancerPool", "p", pool_spec))  # the repair must get through
    assert pool.ready
    assert flow.sim.stats()["objects"]["pools"] == 1


def _condition(ready: bool, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": str(ready), "reason": reason}]}


async def test_a_degraded_load_balancer_changing_under_a_repair_stays_degraded_not_provisioning(
    flow: Flow,
) -> None:
    lb = await flow.running_lb()
    degraded = resource("LoadBalancer", "web", lb.spec, {**lb.status, **_condition(False, "Degraded")})
    flow.sim.store.set_status(str(lb.status["uuid"]), "changing")  # a member change under it is applied
    outcome = await flow.reconcile(degraded)
    assert (outcome.ready, outcome.reason) == (False, "Degraded")


async def test_a_drift_check_leaves_alone_an_object_whose_spec_changed_since_it_began(flow: Flow) -> None:
    lb = await flow.running_lb()
    await flow.cloud.update_load_balancer(str(lb.status["uuid"]), LoadBalancerUpdate(name="edited"))
    # Kopf's forgotten timer holds generation 1; Kubernetes has generation 2 (its owner handles that).
    flow.parents.objects[("LoadBalancer", "shop", "web")] = dataclasses.replace(lb, generation=2)
    before = flow.sim.stats()["mutations"]

    with pytest.raises(NoLongerOurs):
        await flow.reconcile(lb, resync=True)
    assert flow.sim.stats()["mutations"] == before


async def test_a_change_that_lost_the_race_to_a_newer_generation_never_writes_the_older_spec(
    flow: Flow,
) -> None:
    lb = await flow.running_lb()
    uuid = str(lb.status["uuid"])
    # Replica A read generation 1 (cloudName "one") and was frozen before its lock; meanwhile replica B
    # applied generation 2 ("two") and Kubernetes holds generation 2.
    stale = resource("LoadBalancer", "web", {"zone": "lpg1", "cloudName": "one"}, lb.status)
    newer = dataclasses.replace(stale, generation=2, spec={"zone": "lpg1", "cloudName": "two"})
    flow.parents.objects[("LoadBalancer", "shop", "web")] = newer
    await flow.cloud.update_load_balancer(uuid, LoadBalancerUpdate(name="two"))
    before = flow.sim.stats()["mutations"]

    with pytest.raises(NoLongerOurs, match="generation 1 → 2"):
        await flow.reconcile(stale)  # A resumes, gets the lock, and must not write "one" back

    assert (await flow.cloud.get_load_balancer(uuid)).name == "two"
    assert flow.sim.stats()["mutations"] == before


@pytest.mark.parametrize("state", ["being deleted", "gone"])
async def test_a_creation_whose_object_was_deleted_meanwhile_makes_nothing_in_the_cloud(
    flow: Flow, state: str
) -> None:
    new = resource("LoadBalancer", "late", {"zone": "lpg1"})
    if state == "being deleted":  # deleted while the creating replica was frozen: nobody would delete it
        flow.parents.objects[("LoadBalancer", "shop", "late")] = dataclasses.replace(new, deleting=True)

    with pytest.raises(NoLongerOurs):
        await flow.reconcile(new, exists=False)

    assert flow.sim.stats()["objects"]["load_balancers"] == 0, "a cloud object no Kubernetes object owns"


async def test_a_cloud_object_another_object_made_is_never_changed_nor_deleted(flow: Flow) -> None:
    lb = await flow.running_lb()
    uuid = str(lb.status["uuid"])
    # A copy (a restore into another namespace, or a copied manifest with its status) names the same
    # cloud load balancer in status.uuid, under another UID and another name.
    copy = Resource("LoadBalancer", "other", "web", "uid-copy", 1, {"zone": "lpg1"}, dict(lb.status))
    before = flow.sim.stats()["mutations"]

    with pytest.raises(engine.ForeignCloudObject, match="uid-web"):
        await flow.reconcile(copy)
    loop = asyncio.get_running_loop()
    await engine.delete(
        ADAPTERS["LoadBalancer"], flow.ctx, dataclasses.replace(copy, deleting=True), loop.time() + 10
    )

    assert flow.sim.stats()["mutations"] == before
    assert (await flow.cloud.get_load_balancer(uuid)).name == "shop-web"
    assert flow.events[-1][:2] == ("web", "Conflict")


async def test_a_creation_whose_answer_was_lost_is_found_by_its_tag_and_never_made_twice(flow: Flow) -> None:
    # The cloud answers 504 at once and applies the creation after the answer (a gateway gave up).
    flow.sim.faults.configure(fault_lost=1.0, methods=["POST"])
    new = resource("LoadBalancer", "web", {"zone": "lpg1"})
    with pytest.raises(Busy):
        await flow.reconcile(new)
    flow.sim.faults.configure(fault_lost=0.0)

    outcome = await flow.reconcile(new)  # the retry

    assert flow.sim.stats()["faults"] == {"lost": 1}
    assert flow.sim.stats()["objects"]["load_balancers"] == 1, "the retry made a second load balancer"
    assert outcome.ready


async def test_a_deletion_waits_for_a_creation_under_way_and_deletes_what_it_made(
    flow: Flow, make_mutex: MakeMutex
) -> None:
    # A slow cloud (1 s per change) that loses the answer to the creation: it is applied a second after
    # the 504. A deletion that read the cloud without the tree's lock would find nothing and return, and
    # the load balancer would land afterwards, owned by nobody.
    async with Simulator(SimulatorSettings(latency=1.0, lb_ready_delay=0.2, token=SecretStr(TOKEN))) as slow:
        cloud_settings = CloudscaleSettings(base_url=slow.url, token=SecretStr(TOKEN), request_timeout=30)
        async with CloudscaleClient(cloud_settings) as cloud:
            ctx = dataclasses.replace(flow.ctx, cloud=cloud, mutex=make_mutex("replica"))
            new = resource("LoadBalancer", "doomed", {"zone": "lpg1"})
            flow.parents.have(new)
            slow.faults.configure(fault_lost=1.0, methods=["POST"])
            loop = asyncio.get_running_loop()
            creating = asyncio.create_task(
                engine.reconcile(ADAPTERS["LoadBalancer"], ctx, new, loop.time() + 30)
            )
            await slow.wait_for(lambda stats: stats["faults"].get("lost") == 1, within=10)
            # The 504 is in: the creation is in doubt, and the user deletes the object.
            deleting = dataclasses.replace(new, deleting=True)
            flow.parents.objects[("LoadBalancer", "shop", "doomed")] = deleting
            await engine.delete(ADAPTERS["LoadBalancer"], ctx, deleting, loop.time() + 30)
            with pytest.raises(Busy):
                await creating
            assert slow.stats()["objects"]["load_balancers"] == 0, "a load balancer outlived its object"


async def test_a_new_child_reads_the_cloud_once_at_once_before_its_change(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: a new pool was looked up outside the lock, then again under it, then its load balancer was
    # read, one request after the other: three cloud round trips, two of them under the tree's lock,
    # before the one change. Now: its lookup and the load balancer's read go together, under the lock.
    await flow.running_lb()
    rounds: list[list[str]] = []  # requests grouped by overlap: each group is one round trip
    in_flight: list[str] = []
    send = flow.cloud._request

    async def recorded(what: str, *args: Any, **kwargs: Any) -> Any:
        if not in_flight:
            rounds.append([])
        rounds[-1].append(what)
        in_flight.append(what)
        try:
            return await send(what, *args, **kwargs)
        finally:
            in_flight.remove(what)

    monkeypatch.setattr(flow.cloud, "_request", recorded)
    pool_spec = {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}
    made = await flow.reconcile(resource("LoadBalancerPool", "p", pool_spec))

    assert made.ready
    assert [sorted(r) for r in rounds] == [["get load balancer", "list pools"], ["create pool"]], rounds


async def _member_tree(flow: Flow, members: int) -> list[Resource]:
    """A Ready load balancer, pool and ``members`` members, as Kubernetes has them once handled."""

    def handled(obj: Resource, outcome: engine.Outcome) -> Resource:
        ready = {"type": "Ready", "status": "True", "reason": outcome.reason}
        done = resource(obj.kind, obj.name, obj.spec, {**outcome.status, "conditions": [ready]})
        flow.parents.objects[(obj.kind, "shop", obj.name)] = done
        return done

    lb = resource("LoadBalancer", "web", {"zone": "lpg1"})
    tree = [handled(lb, await flow.reconcile(lb))]
    pool_spec = {"loadBalancerRef": {"name": "web"}, "algorithm": "round_robin", "protocol": "tcp"}
    pool = resource("LoadBalancerPool", "p", pool_spec)
    tree.append(handled(pool, await flow.reconcile(pool)))
    for n in range(members):
        spec = {"poolRef": {"name": "p"}, "address": f"10.0.0.{n + 1}", "protocolPort": 80}
        member = resource("LoadBalancerPoolMember", f"m{n}", {**spec, "subnetUUID": SUBNET})
        tree.append(handled(member, await flow.reconcile(member)))
    listener = resource("LoadBalancerListener", "l", {"poolRef": {"name": "p"}, "protocolPort": 80})
    monitor_spec = {"poolRef": {"name": "p"}, "type": "http", "http": {"urlPath": "/healthz"}}
    monitor = resource("LoadBalancerHealthMonitor", "hm", monitor_spec)
    tree += [
        handled(listener, await flow.reconcile(listener)),
        handled(monitor, await flow.reconcile(monitor)),
    ]
    return tree


async def test_drift_checks_of_a_tree_share_one_list_per_kind_and_pool(flow: Flow) -> None:
    # Before: every drift check read its own object: one cloud read per object per interval.
    handled = await _member_tree(flow, 4)
    flow.ctx.snapshot = CloudSnapshot(flow.cloud, max_age=60)
    requests, mutations = flow.sim.stats()["requests"], flow.sim.stats()["mutations"]

    outcomes = [await flow.reconcile(obj, resync=True) for obj in handled]

    assert all(outcome.ready for outcome in outcomes)
    assert flow.sim.stats()["mutations"] == mutations
    # The lists: load balancers, pools, the pool's members, listeners, monitors (the parents are
    # Kubernetes reads); and each member read afresh, its monitorStatus to be refreshed (handled before
    # the monitor existed). Then, at rest, the lists alone.
    assert flow.ctx.snapshot.reads == 5
    assert flow.sim.stats()["requests"] - requests == 5 + 4
    settled = [
        resource(obj.kind, obj.name, obj.spec, {**obj.status, **outcome.status})
        for obj, outcome in zip(handled, outcomes, strict=True)
    ]
    flow.ctx.snapshot = CloudSnapshot(flow.cloud, max_age=60)
    requests = flow.sim.stats()["requests"]
    again = [await flow.reconcile(obj, resync=True) for obj in settled]
    assert all(outcome.ready for outcome in again)
    assert flow.sim.stats()["requests"] - requests == 5


async def test_drift_seen_in_the_shared_list_is_read_afresh_and_set_back(flow: Flow) -> None:
    handled = await _member_tree(flow, 2)
    member = handled[2]
    pool, uuid = str(member.status["poolUUID"]), str(member.status["uuid"])
    flow.ctx.snapshot = CloudSnapshot(flow.cloud, max_age=60)
    await flow.cloud.update_member(pool, uuid, MemberUpdate(enabled=False))

    await flow.reconcile(member, resync=True)

    assert (await flow.cloud.get_member(pool, uuid)).enabled is True
    assert [reason for _, reason, _ in flow.events].count("DriftCorrected") == 1


async def test_a_list_never_writes_a_status_it_shows_a_change_of_the_object_is_read_afresh(
    flow: Flow,
) -> None:
    handled = await _member_tree(flow, 1)
    member = handled[2]
    flow.ctx.snapshot = CloudSnapshot(flow.cloud, max_age=60)
    stale = resource(member.kind, member.name, member.spec, {**member.status, "monitorStatus": "down"})
    flow.parents.objects[(member.kind, "shop", member.name)] = stale
    gets = flow.sim.stats()["requests"]

    outcome = await flow.reconcile(stale, resync=True)

    assert outcome.status["monitorStatus"] != "down"  # the cloud's, to be written from a fresh read
    assert flow.sim.stats()["requests"] - gets >= 2  # the list, then the member itself
