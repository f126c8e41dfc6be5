"""The five kinds as adapters of the shared reconcile flow: what to create, compare and lock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from ipaddress import ip_network
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from lb_operator.cloud import NotFound
from lb_operator.cloud.models import (
    HealthMonitor,
    HealthMonitorSpec,
    HealthMonitorUpdate,
    HttpCheckSpec,
    HttpCheckUpdate,
    Listener,
    ListenerSpec,
    ListenerUpdate,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerUpdate,
    Member,
    MemberSpec,
    MemberUpdate,
    Pool,
    PoolSpec,
    PoolUpdate,
    VipAddressSpec,
)
from lb_operator.reconcile.engine import (
    UID_TAG,
    Context,
    ForeignCloudObject,
    Outcome,
    Parent,
    ParentNotReady,
    family_by_uuid,
    family_key,
    wanted_tags,
)
from lb_operator.reconcile.parents import Ref
from lb_operator.reconcile.resources import Resource

U = TypeVar("U", bound=BaseModel)

IN_SYNC = ("Reconciled", "the cloud object matches the spec")


def diff(update: type[U], current: BaseModel, wanted: dict[str, Any]) -> U | None:
    """The update that sets every wanted field differing from ``current``; ``None`` values are not wanted."""
    changed = {
        name: value for name, value in wanted.items() if value is not None and getattr(current, name) != value
    }
    return update(**changed) if changed else None


class Tagged(Protocol):
    @property
    def tags(self) -> dict[str, str]: ...


C = TypeVar("C", bound=Tagged)


async def find_own(
    obj: Resource, get: Callable[[str], Awaitable[C]], listing: Callable[..., Awaitable[list[C]]]
) -> C | None:
    """The cloud object of ``obj``: by ``status.uuid``; else, after a crash before the status was
    written or after someone removed it, ours by the UID tag; else ``None``.

    One found by ``status.uuid`` is ours only if its UID tag is this object's
    (or it has none: a tag removed in the console is drift, set back). One
    carrying another object's UID (a copy, a restore into another namespace)
    raises ``ForeignCloudObject``: changing or deleting it would break the
    object it belongs to.
    """
    uuid = obj.status.get("uuid")
    if uuid:
        try:
            found = await get(str(uuid))
        except NotFound:
            pass
        else:
            owner = found.tags.get(UID_TAG)
            if owner is not None and owner != obj.uid:
                raise ForeignCloudObject(obj, str(uuid), owner)
            return found
    listed = await listing(tags={UID_TAG: obj.uid})
    return listed[0] if listed else None


def _pool_of(parent: Parent | None) -> str:
    if parent is None or parent.pool is None:
        raise ParentNotReady("the pool of this object is not known yet")
    return parent.pool


class LoadBalancers:
    """LoadBalancer: every change locked on its tree's family key, its creation included."""

    kind = "LoadBalancer"

    def parent_ref(self, obj: Resource) -> Ref | None:
        return None

    def lock_key(self, ctx: Context, obj: Resource, parent: Parent | None) -> str | None:
        return family_key(obj.uid)

    async def parent(self, ctx: Context, obj: Resource) -> Parent | None:
        return None

    async def find(self, ctx: Context, obj: Resource, parent: Parent | None) -> LoadBalancer | None:
        return await find_own(obj, ctx.cloud.get_load_balancer, ctx.cloud.list_load_balancers)

    async def create(self, ctx: Context, obj: Resource, parent: Parent | None) -> LoadBalancer:
        vips = [
            VipAddressSpec(subnet=vip.get("subnetUUID"), address=vip.get("address"))
            for vip in obj.spec.get("vipAddresses") or []
        ]
        spec = LoadBalancerSpec(
            name=obj.cloud_name,
            flavor=obj.spec.get("flavor"),
            zone=obj.spec.get("zone"),
            vip_addresses=vips or None,
            tags=wanted_tags(obj),
        )
        return await ctx.cloud.create_load_balancer(spec)

    def changes(self, obj: Resource, current: LoadBalancer) -> LoadBalancerUpdate | None:
        return diff(LoadBalancerUpdate, current, {"name": obj.cloud_name, "tags": wanted_tags(obj)})

    async def update(self, ctx: Context, current: LoadBalancer, changes: LoadBalancerUpdate) -> None:
        await ctx.cloud.update_load_balancer(current.uuid, changes)

    async def delete(self, ctx: Context, obj: Resource, current: LoadBalancer) -> None:
        await ctx.cloud.delete_load_balancer(current.uuid)

    def outcome(self, obj: Resource, current: LoadBalancer, parent: Parent | None) -> Outcome:
        status = {
            "uuid": current.uuid,
            "cloudStatus": current.status,
            "vipAddresses": [
                {"address": v.address, "subnetUUID": v.subnet.uuid} for v in current.vip_addresses
            ],
        }
        # `changing` is the build of a new load balancer, but also any later change under a built one,
        # which keeps serving meanwhile: that must not make it (and so its children) not Ready.
        serving = obj.is_ready() or obj.reason("Ready") == "Degraded"
        built = serving and obj.status.get("uuid") == current.uuid
        if current.status == "running" or (current.status == "changing" and built and obj.is_ready()):
            return Outcome(status, True, *IN_SYNC)
        if current.status == "changing" and built:  # a change under a degraded one: still degraded
            message = "the load balancer was degraded before this change began; it is `changing` now"
            return Outcome(status, False, "Degraded", message)
        if current.status in DEGRADED:
            # Also when all its members are down: its children must still get the changes that repair it.
            return Outcome(
                status,
                False,
                "Degraded",
                f"the cloud reports the load balancer `{current.status}`; its pools, members, listeners "
                "and monitors are still reconciled",
            )
        return Outcome(
            status, False, "Provisioning", f"the cloud is building the load balancer ({current.status})"
        )


class Pools:
    """LoadBalancerPool: every change locked on its load balancer."""

    kind = "LoadBalancerPool"

    def parent_ref(self, obj: Resource) -> Ref | None:
        ref = obj.spec.get("loadBalancerRef")
        return ("LoadBalancer", obj.namespace, str(ref["name"])) if ref else None

    def lock_key(self, ctx: Context, obj: Resource, parent: Parent | None) -> str | None:
        if parent is None or ctx.settings.scope_of(self.kind) == "none":
            return None
        return parent.family

    async def parent(self, ctx: Context, obj: Resource) -> Parent:
        ref = obj.spec.get("loadBalancerRef")
        if ref:
            lb = await ctx.resources.get("LoadBalancer", obj.namespace, ref["name"])
            if lb is None:
                raise ParentNotReady(f"LoadBalancer {obj.namespace}/{ref['name']} does not exist (yet)")
            usable = lb.is_ready() or lb.reason("Ready") == "Degraded"  # degraded: the children repair it
            if not usable or not lb.status.get("uuid"):
                raise ParentNotReady(f"LoadBalancer {obj.namespace}/{ref['name']} is not Ready yet")
            return Parent(load_balancer=str(lb.status["uuid"]), family=family_key(lb.uid))
        uuid = str(obj.spec["loadBalancerUUID"])
        try:
            cloud_lb = await ctx.cloud.get_load_balancer(uuid)
        except NotFound:
            raise ParentNotReady(f"load balancer {uuid} does not exist in the cloud", watched=False) from None
        if cloud_lb.status != "running" and cloud_lb.status not in DEGRADED:
            message = f"load balancer {uuid} is {cloud_lb.status}, not running yet"
            raise ParentNotReady(message, watched=False)
        return Parent(load_balancer=uuid, family=await family_by_uuid(ctx, uuid))

    async def find(self, ctx: Context, obj: Resource, parent: Parent | None) -> Pool | None:
        return await find_own(obj, ctx.cloud.get_pool, ctx.cloud.list_pools)

    async def create(self, ctx: Context, obj: Resource, parent: Parent | None) -> Pool:
        assert parent is not None
        spec = PoolSpec(
            name=obj.cloud_name,
            load_balancer=parent.load_balancer,
            algorithm=obj.spec["algorithm"],
            protocol=obj.spec["protocol"],
            tags=wanted_tags(obj),
        )
        return await ctx.cloud.create_pool(spec)

    def changes(self, obj: Resource, current: Pool) -> PoolUpdate | None:
        return diff(PoolUpdate, current, {"name": obj.cloud_name, "tags": wanted_tags(obj)})

    async def update(self, ctx: Context, current: Pool, changes: PoolUpdate) -> None:
        await ctx.cloud.update_pool(current.uuid, changes)

    async def delete(self, ctx: Context, obj: Resource, current: Pool) -> None:
        await ctx.cloud.delete_pool(current.uuid)

    def outcome(self, obj: Resource, current: Pool, parent: Parent | None) -> Outcome:
        return Outcome({"uuid": current.uuid, "loadBalancerUUID": current.load_balancer.uuid}, True, *IN_SYNC)


class _PoolChild:
    """What members, listeners and health monitors share: a pool parent and the configurable lock scope."""

    kind = ""

    def parent_ref(self, obj: Resource) -> Ref | None:
        ref = obj.spec.get("poolRef")
        return ("LoadBalancerPool", obj.namespace, str(ref["name"])) if ref else None

    def lock_key(self, ctx: Context, obj: Resource, parent: Parent | None) -> str | None:
        scope = ctx.settings.scope_of(self.kind)
        if parent is None or scope == "none":
            return None
        return f"pool/{parent.pool}" if scope == "pool" else parent.family

    async def parent(self, ctx: Context, obj: Resource) -> Parent:
        ref = obj.spec.get("poolRef")
        if ref:
            pool = await ctx.resources.get("LoadBalancerPool", obj.namespace, ref["name"])
            if pool is None:
                raise ParentNotReady(f"LoadBalancerPool {obj.namespace}/{ref['name']} does not exist (yet)")
            if not pool.is_ready() or not pool.status.get("uuid") or not pool.status.get("loadBalancerUUID"):
                raise ParentNotReady(f"LoadBalancerPool {obj.namespace}/{ref['name']} is not Ready yet")
            lb_uuid = str(pool.status["loadBalancerUUID"])
            family = await family_by_uuid(ctx, lb_uuid)  # the key of the cloud load balancer it changes
            return Parent(load_balancer=lb_uuid, family=family, pool=str(pool.status["uuid"]))
        uuid = str(obj.spec["poolUUID"])
        try:
            cloud_pool = await ctx.cloud.get_pool(uuid)
        except NotFound:
            raise ParentNotReady(f"pool {uuid} does not exist in the cloud", watched=False) from None
        lb_uuid = cloud_pool.load_balancer.uuid
        return Parent(load_balancer=lb_uuid, family=await family_by_uuid(ctx, lb_uuid), pool=uuid)

    @staticmethod
    def _status(current: Member | HealthMonitor) -> dict[str, Any]:
        """The status of a child that always has a pool (a listener's pool may be gone)."""
        return {
            "uuid": current.uuid,
            "loadBalancerUUID": current.load_balancer.uuid,
            "poolUUID": current.pool.uuid,
        }


class Members(_PoolChild):
    kind = "LoadBalancerPoolMember"

    async def find(self, ctx: Context, obj: Resource, parent: Parent | None) -> Member | None:
        if parent is None or parent.pool is None:
            return None
        pool = parent.pool
        try:
            return await find_own(
                obj, lambda uuid: ctx.cloud.get_member(pool, uuid), partial(ctx.cloud.list_members, pool)
            )
        except NotFound:
            raise ParentNotReady(f"pool {pool} is gone from the cloud") from None

    async def create(self, ctx: Context, obj: Resource, parent: Parent | None) -> Member:
        pool = _pool_of(parent)
        spec = MemberSpec(
            name=obj.cloud_name,
            protocol_port=obj.spec["protocolPort"],
            address=obj.spec["address"],
            subnet=obj.spec["subnetUUID"],
            enabled=obj.spec.get("enabled", True),
            monitor_port=obj.spec.get("monitorPort"),
            tags=wanted_tags(obj),
        )
        return await ctx.cloud.create_member(pool, spec)

    def changes(self, obj: Resource, current: Member) -> MemberUpdate | None:
        wanted = {"name": obj.cloud_name, "enabled": obj.spec.get("enabled", True), "tags": wanted_tags(obj)}
        return diff(MemberUpdate, current, wanted)

    async def update(self, ctx: Context, current: Member, changes: MemberUpdate) -> None:
        await ctx.cloud.update_member(current.pool.uuid, current.uuid, changes)

    async def delete(self, ctx: Context, obj: Resource, current: Member) -> None:
        await ctx.cloud.delete_member(current.pool.uuid, current.uuid)

    def outcome(self, obj: Resource, current: Member, parent: Parent | None) -> Outcome:
        status = {**self._status(current), "monitorStatus": current.monitor_status}
        return Outcome(status, True, *IN_SYNC)


DEGRADED = frozenset({"degraded", "error"})
"""Cloud statuses of a built load balancer that is not healthy; changes under it still go through (the
cluster-api provider's rule: wait only while it is ``changing``)."""


def same_networks(current: list[str], wanted: list[str]) -> bool:
    """Whether two lists of CIDRs name the same networks (``10.0.0.5/24`` is ``10.0.0.0/24``, ``1.1.1.1`` is
    ``1.1.1.1/32``, order aside). An API may store them normalized and echo that form back; comparing the
    text would find drift in every check and send a change each time."""
    try:
        return {ip_network(c, strict=False) for c in current} == {ip_network(c, strict=False) for c in wanted}
    except ValueError:
        return current == wanted  # not networks: the cloud decides what they mean


def _listener_fields(obj: Resource) -> dict[str, Any]:
    return {
        "name": obj.cloud_name,
        "protocol": obj.spec.get("protocol", "tcp"),
        "protocol_port": obj.spec["protocolPort"],
        "allowed_cidrs": list(obj.spec.get("allowedCIDRs") or []),
        "timeout_client_data_ms": obj.spec.get("timeoutClientDataMs"),
        "timeout_member_connect_ms": obj.spec.get("timeoutMemberConnectMs"),
        "timeout_member_data_ms": obj.spec.get("timeoutMemberDataMs"),
        "tags": wanted_tags(obj),
    }


class Listeners(_PoolChild):
    kind = "LoadBalancerListener"

    async def find(self, ctx: Context, obj: Resource, parent: Parent | None) -> Listener | None:
        return await find_own(obj, ctx.cloud.get_listener, ctx.cloud.list_listeners)

    async def create(self, ctx: Context, obj: Resource, parent: Parent | None) -> Listener:
        pool = _pool_of(parent)
        return await ctx.cloud.create_listener(ListenerSpec(pool=pool, **_listener_fields(obj)))

    def changes(self, obj: Resource, current: Listener) -> ListenerUpdate | None:
        wanted = _listener_fields(obj)
        if same_networks(current.allowed_cidrs, wanted["allowed_cidrs"]):
            wanted["allowed_cidrs"] = current.allowed_cidrs  # the same networks, written another way
        return diff(ListenerUpdate, current, wanted)

    async def update(self, ctx: Context, current: Listener, changes: ListenerUpdate) -> None:
        await ctx.cloud.update_listener(current.uuid, changes)

    async def delete(self, ctx: Context, obj: Resource, current: Listener) -> None:
        await ctx.cloud.delete_listener(current.uuid)

    def outcome(self, obj: Resource, current: Listener, parent: Parent | None) -> Outcome:
        status = {"uuid": current.uuid, "loadBalancerUUID": current.load_balancer.uuid}
        if current.pool is not None:
            status["poolUUID"] = current.pool.uuid
        return Outcome(status, True, *IN_SYNC)


_HTTP_FIELDS = {"expectedCodes": "expected_codes", "method": "method", "urlPath": "url_path", "host": "host"}


class HealthMonitors(_PoolChild):
    kind = "LoadBalancerHealthMonitor"

    async def find(self, ctx: Context, obj: Resource, parent: Parent | None) -> HealthMonitor | None:
        return await find_own(obj, ctx.cloud.get_health_monitor, ctx.cloud.list_health_monitors)

    async def create(self, ctx: Context, obj: Resource, parent: Parent | None) -> HealthMonitor:
        pool = _pool_of(parent)
        http = obj.spec.get("http")
        spec = HealthMonitorSpec(
            pool=pool,
            type=obj.spec["type"],
            delay_s=obj.spec.get("delaySeconds"),
            timeout_s=obj.spec.get("timeoutSeconds"),
            up_threshold=obj.spec.get("upThreshold"),
            down_threshold=obj.spec.get("downThreshold"),
            http=HttpCheckSpec(
                version=http.get("version"),
                **{ours: http.get(theirs) for theirs, ours in _HTTP_FIELDS.items()},
            )
            if http
            else None,
            tags=wanted_tags(obj),
        )
        return await ctx.cloud.create_health_monitor(spec)

    def changes(self, obj: Resource, current: HealthMonitor) -> HealthMonitorUpdate | None:
        wanted: dict[str, Any] = {
            "delay_s": obj.spec.get("delaySeconds"),
            "timeout_s": obj.spec.get("timeoutSeconds"),
            "up_threshold": obj.spec.get("upThreshold"),
            "down_threshold": obj.spec.get("downThreshold"),
            "tags": wanted_tags(obj),
        }
        update = diff(HealthMonitorUpdate, current, wanted)
        http = obj.spec.get("http")
        if http and current.http is not None:
            http_wanted = {ours: http.get(theirs) for theirs, ours in _HTTP_FIELDS.items()}
            http_update = diff(HttpCheckUpdate, current.http, http_wanted)
            if http_update is not None:
                fields = update.model_dump(exclude_unset=True) if update else {}
                return HealthMonitorUpdate(**fields, http=http_update)
        return update

    async def update(self, ctx: Context, current: HealthMonitor, changes: HealthMonitorUpdate) -> None:
        await ctx.cloud.update_health_monitor(current.uuid, changes)

    async def delete(self, ctx: Context, obj: Resource, current: HealthMonitor) -> None:
        await ctx.cloud.delete_health_monitor(current.uuid)

    def outcome(self, obj: Resource, current: HealthMonitor, parent: Parent | None) -> Outcome:
        return Outcome(self._status(current), True, *IN_SYNC)


ADAPTERS: dict[str, Any] = {
    adapter.kind: adapter for adapter in (LoadBalancers(), Pools(), Members(), Listeners(), HealthMonitors())
}
