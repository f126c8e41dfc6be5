"""The one reconcile flow every kind shares: plan first, lock only to mutate.

1. Resolve the parent (a child waits with ``ParentNotReady`` until it is Ready).
2. Read the cloud object and compare it with the spec.
3. In sync → return the status; no lock is taken (readers never pay for writers).
4. Otherwise, under the Lease of the lock key: read again (another replica may
   have done the work meanwhile), ``held.check()``, mutate, read back. The
   key of a load balancer's whole tree is ``family_key`` of its object, so
   its creation is locked as well as every later change.

Level-based and idempotent: running it twice, or on two replicas at once,
changes nothing the second time. Cloud objects carry the Kubernetes object's
UID as a tag, so an object created just before a crash is found, not made twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from kubernetes.aio import client

from lb_operator.cloud import Backend, NotFound
from lb_operator.cloud.models import LoadBalancer
from lb_operator.mutex import Hold, LeaseMutex, Waiting
from lb_operator.reconcile.resources import Resource, ResourceReader
from lb_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

UID_TAG = "lboperator-uid"
GLOBAL_KEY = "global"
OBJECT_TAG = "lboperator-object"

EventSink = Callable[[Resource, str, str, str], None]
"""Posts a Kubernetes Event: (object, type ``Normal``/``Warning``, reason, message)."""


class ParentNotReady(Exception):
    """The parent object is missing or not Ready yet: wait, do not call the cloud."""


@dataclass
class Context:
    """What every reconcile needs; one per operator process, shared by all handlers."""

    cloud: Backend
    mutex: LeaseMutex | None  # None only when locking is switched off (unsafe)
    settings: OperatorSettings
    resources: ResourceReader
    events: EventSink = field(default=lambda *_: None)
    api: client.ApiClient | None = None  # owned here so it is closed with the rest


@dataclass(frozen=True)
class Parent:
    """Where a child object lives in the cloud, and the lock key of its load balancer's tree."""

    load_balancer: str
    family: str
    pool: str | None = None


def family_key(namespace: str, load_balancer: str) -> str:
    """The lock key of a LoadBalancer object's whole tree: ``lb/<namespace>/<name>``.

    Keyed on the Kubernetes object, not the cloud UUID, so that it exists
    before the cloud load balancer does (its creation is serialized too: the
    cloud has no idempotency key, and two replicas creating it would make
    two) and never changes while a change may be in flight.
    """
    return f"lb/{namespace}/{load_balancer}"


def family_of(load_balancer: LoadBalancer) -> str:
    """The lock key of a cloud load balancer: its object's family if we made it, else its UUID."""
    owner = load_balancer.tags.get(OBJECT_TAG, "")
    namespace, dot, name = owner.partition(".")  # a namespace has no dots: the first one separates
    return family_key(namespace, name) if dot and namespace and name else f"lb/{load_balancer.uuid}"


@dataclass(frozen=True)
class Outcome:
    """The status to write, and whether the object is Ready."""

    status: dict[str, Any]
    ready: bool
    reason: str
    message: str


C = TypeVar("C")


class Adapter(Protocol, Generic[C]):
    """What the flow needs to know about one kind."""

    kind: str

    def lock_key(self, ctx: Context, obj: Resource, parent: Parent | None) -> str | None:
        """The mutex key for mutating this object, creation included (``None``: no lock)."""
        ...

    async def parent(self, ctx: Context, obj: Resource) -> Parent | None: ...

    async def find(self, ctx: Context, obj: Resource, parent: Parent | None) -> C | None:
        """The cloud object: by ``status.uuid``, else by the UID tag; ``None`` if there is none."""
        ...

    async def create(self, ctx: Context, obj: Resource, parent: Parent | None) -> C: ...

    def changes(self, obj: Resource, current: C) -> Any | None:
        """The update that makes ``current`` match the spec; ``None`` when in sync."""
        ...

    async def update(self, ctx: Context, current: C, changes: Any) -> None: ...

    async def delete(self, ctx: Context, obj: Resource, current: C) -> None: ...

    def outcome(self, obj: Resource, current: C, parent: Parent | None) -> Outcome: ...


def operator_tags(obj: Resource) -> dict[str, str]:
    return {UID_TAG: obj.uid, OBJECT_TAG: f"{obj.namespace}.{obj.name}"}


def wanted_tags(obj: Resource) -> dict[str, str]:
    return {**dict(obj.spec.get("tags") or {}), **operator_tags(obj)}


@asynccontextmanager
async def serialized(
    ctx: Context, key: str | None, obj: Resource, deadline: float
) -> AsyncIterator[Hold | None]:
    """Hold the lock ``key`` until ``deadline`` (event-loop time), or nothing if there is no key/lock."""
    if key is None or ctx.mutex is None:
        yield None
        return
    if ctx.settings.global_lock:
        key = GLOBAL_KEY  # the serial baseline of `make bench-e2e`

    async def on_wait(waiting: Waiting) -> None:
        ctx.events(
            obj, "Normal", "WaitingForLock", f"waiting for {waiting.lease_name} held by {waiting.holder}"
        )

    async with ctx.mutex.hold(key, deadline=deadline, on_wait=on_wait) as held:
        yield held


def _check(held: Hold | None) -> None:
    if held is not None:
        held.check()


async def reconcile(adapter: Adapter[C], ctx: Context, obj: Resource, deadline: float) -> Outcome:
    """Make the cloud match ``obj``; return what to write to its status."""
    parent = await adapter.parent(ctx, obj)
    current = await adapter.find(ctx, obj, parent)
    if current is not None and adapter.changes(obj, current) is None:
        return adapter.outcome(obj, current, parent)  # in sync: no lock

    async with serialized(ctx, adapter.lock_key(ctx, obj, parent), obj, deadline) as held:
        current = await adapter.find(ctx, obj, parent)  # another replica may have done it meanwhile
        if current is None:
            _check(held)
            current = await adapter.create(ctx, obj, parent)
            ctx.events(obj, "Normal", "Created", f"created {adapter.kind} in the cloud")
        else:
            changes = adapter.changes(obj, current)
            if changes is not None:
                _check(held)
                await adapter.update(ctx, current, changes)
                ctx.events(obj, "Normal", "Updated", f"updated {adapter.kind} in the cloud")
                current = await adapter.find(ctx, obj, parent) or current
    return adapter.outcome(obj, current, parent)


async def delete(adapter: Adapter[C], ctx: Context, obj: Resource, deadline: float) -> None:
    """Remove the cloud object of ``obj``; one that is already gone (e.g. with its parent) is success."""
    try:
        parent = await adapter.parent(ctx, obj)
    except ParentNotReady:
        parent = await _parent_from_status(ctx, obj)
    try:
        current = await adapter.find(ctx, obj, parent)
    except NotFound:
        current = None  # the parent is gone, and its children with it
    if current is None:
        return
    async with serialized(ctx, adapter.lock_key(ctx, obj, parent), obj, deadline) as held:
        _check(held)
        try:
            await adapter.delete(ctx, obj, current)
        except NotFound:
            return
    ctx.events(obj, "Normal", "Deleted", f"deleted {adapter.kind} in the cloud")


async def _parent_from_status(ctx: Context, obj: Resource) -> Parent | None:
    """A child whose parent object is gone still knows, from its status, where it lived.

    ``None`` when its load balancer is gone from the cloud too: then so is the child.
    """
    lb = obj.status.get("loadBalancerUUID")
    if not lb:
        return None
    try:
        cloud_lb = await ctx.cloud.get_load_balancer(str(lb))
    except NotFound:
        return None
    return Parent(load_balancer=str(lb), family=family_of(cloud_lb), pool=obj.status.get("poolUUID"))
