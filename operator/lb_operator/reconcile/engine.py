"""The one reconcile flow every kind shares: plan first, lock only to mutate.

1. Resolve the parent. A child whose parent is not Ready waits for it, woken
   by the parent's watch event (``ParentWatch``), for part of the attempt;
   then it gives up with ``ParentNotReady`` and is retried.
2. Read the cloud object and compare it with the spec.
3. In sync → return the status; no lock is taken (readers never pay for writers).
4. Otherwise, under the Lease of the lock key: read again (another replica may
   have done the work meanwhile), wait while the cloud says the load balancer
   is ``changing``, ``held.check()``, mutate, read back. The key of a load
   balancer's whole tree is ``family_key`` of its object, so its creation is
   locked as well as every later change.
5. A new load balancer is waited for under the lock until it is ``running``;
   a mutation whose answer never came (timeout, cut connection) may still be
   applied by the cloud, so the lock is kept until the load balancer has
   settled: the next holder never collides with it.

Every read, wait and mutation of an attempt is bounded by its deadline
(``asyncio.timeout_at``): past it the attempt ends with ``DeadlineExceeded``,
the lock is released, and the handler retries later.

Level-based and idempotent: running it twice, or on two replicas at once,
changes nothing the second time. Cloud objects carry the Kubernetes object's
UID as a tag, so an object created just before a crash is found, not made twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from kubernetes.aio import client

from lb_operator.cloud import Backend, Busy, Invalid, NotFound
from lb_operator.cloud.models import LoadBalancer
from lb_operator.mutex import Hold, LeaseMutex, Waiting
from lb_operator.reconcile.parents import ParentWatch, Ref, until_set
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


class NoLongerOurs(Exception):
    """A drift check found, under the lock, the object deleted or being deleted (its delete handler owns it)
    or labelled for another replica (which checks it from now on): it leaves the object alone."""


class DeadlineExceeded(Exception):
    """The attempt's deadline passed while it was ``doing`` something; the lock is released, retry later."""

    def __init__(self, doing: str) -> None:
        super().__init__(f"the attempt ran out of time while {doing}; it is retried")


PARENT_FIRST_WAIT = 2.0
"""Seconds a child not yet reporting ``ParentNotReady`` waits before it reports it."""

PARENT_WAIT = 10.0
"""Seconds (at most half the attempt) a child waits for its parent before it gives up and is retried.
Waiting here costs nothing; each retry costs Kopf's writes of status and progress, which loaded the API
server when it was 1 s. A drain of the object cuts the wait short (``Context.leaving``); a deletion of
a waiting child waits for it (Kopf runs one handler per object at a time)."""


@dataclass
class Context:
    """What every reconcile needs; one per operator process, shared by all handlers."""

    cloud: Backend
    mutex: LeaseMutex | None  # None only when locking is switched off (unsafe)
    settings: OperatorSettings
    resources: ResourceReader
    events: EventSink = field(default=lambda *_: None)
    api: client.ApiClient | None = None  # owned here so it is closed with the rest
    parents: ParentWatch = field(default_factory=lambda: ParentWatch(None, []))
    shard: str | None = None  # with sharding: the shard label of the objects this process owns
    leaving: set[str] = field(default_factory=set)  # UIDs being drained away: their waits end at once


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

    def parent_ref(self, obj: Resource) -> Ref | None:
        """The parent object this one waits for, if it names one by reference."""
        ...

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
        if waiting.local:
            return  # queueing behind a sibling in this replica is the normal pace of a tree: no Event
        ctx.events(
            obj, "Normal", "WaitingForLock", f"waiting for {waiting.lease_name} held by {waiting.holder}"
        )

    async with ctx.mutex.hold(key, deadline=deadline, on_wait=on_wait) as held:
        yield held


def _check(held: Hold | None) -> None:
    if held is not None:
        held.check()


async def reconcile(
    adapter: Adapter[C], ctx: Context, obj: Resource, deadline: float, *, resync: bool = False
) -> Outcome:
    """Make the cloud match ``obj``; return what to write to its status.

    ``resync``: a periodic drift check; whatever it has to change is drift,
    and is reported as ``DriftCorrected``.
    """
    try:
        async with asyncio.timeout_at(deadline):
            parent = await _parent(adapter, ctx, obj, deadline)
            current = await adapter.find(ctx, obj, parent)
    except TimeoutError:
        raise DeadlineExceeded("reading the cloud") from None
    if current is not None and adapter.changes(obj, current) is None:
        return adapter.outcome(obj, current, parent)  # in sync: no lock

    async with serialized(ctx, adapter.lock_key(ctx, obj, parent), obj, deadline) as held:
        return await _change(adapter, ctx, obj, parent, held, deadline, resync)


async def _parent(adapter: Adapter[C], ctx: Context, obj: Resource, deadline: float) -> Parent | None:
    """The parent; if it is not Ready, wait (woken by its watch) for part of the attempt, then give up.

    An object that does not report ``ParentNotReady`` yet waits only
    ``PARENT_FIRST_WAIT``, so a person soon sees what it waits for.
    """
    # The first time, wait briefly (most parents of a bulk apply are Ready within it), then say so in
    # status; from the next attempt on, wait longer, woken by the parent's watch.
    ref = adapter.parent_ref(obj)
    patience = PARENT_WAIT if obj.reason("Ready") == "ParentNotReady" else PARENT_FIRST_WAIT
    loop = asyncio.get_running_loop()
    give_up = loop.time() + min(patience, (deadline - loop.time()) / 2)
    while True:
        with ctx.parents.expecting(ref) as changed:
            try:
                return await adapter.parent(ctx, obj)
            except ParentNotReady:
                if changed is None or obj.uid in ctx.leaving or not await until_set(changed, give_up):
                    raise


def why_not_ours(ctx: Context, obj: Resource, now: Resource | None) -> str | None:
    """Why a drift check that began with ``obj`` must leave the object, read again as ``now``; else None."""
    if now is None or now.deleting or now.uid != obj.uid:
        return "is being deleted"
    if ctx.shard is not None and now.shard != ctx.shard:
        return f"belongs to replica {now.shard} now"
    if now.generation != obj.generation:  # e.g. the timer of a copy Kopf forgot: its spec is old
        return "changed since the check began"
    return None


async def _change(
    adapter: Adapter[C],
    ctx: Context,
    obj: Resource,
    parent: Parent | None,
    held: Hold | None,
    deadline: float,
    resync: bool,
) -> Outcome:
    """Under the lock: read again, wait for the load balancer to settle, mutate, and report."""
    try:
        async with asyncio.timeout_at(deadline):
            current = await adapter.find(ctx, obj, parent)  # another replica may have done it meanwhile
            changes = adapter.changes(obj, current) if current is not None else None
            if current is not None and changes is None:
                return adapter.outcome(obj, current, parent)
            if resync:
                # Correct only what is still wanted, and still ours: a deletion may have begun since the
                # check began (its handler holds this lock while it deletes and must not be undone), or
                # the object may have moved to another replica (Kopf keeps a forgotten object's timer).
                gone = why_not_ours(ctx, obj, await ctx.resources.get(obj.kind, obj.namespace, obj.name))
                if gone is not None:
                    raise NoLongerOurs(f"{obj.ref} {gone}")
            load_balancer = _load_balancer_of(parent, current)
            if load_balancer is not None:
                await until_settled(ctx, load_balancer)  # never mutate while the cloud says `changing`
    except TimeoutError:
        raise DeadlineExceeded("waiting for the load balancer to stop changing") from None

    _check(held)
    answered = False
    try:
        async with asyncio.timeout_at(deadline):
            if current is None:
                try:
                    current = await adapter.create(ctx, obj, parent)
                except (Invalid, NotFound) as error:
                    answered = True
                    if _parent_is_gone(error):
                        raise ParentNotReady(f"the parent is gone from the cloud: {error}") from None
                    raise
                answered = True
                _created(adapter, ctx, obj)
            else:
                await adapter.update(ctx, current, changes)
                answered = True
                _updated(adapter, ctx, obj, changes, resync)
                current = await adapter.find(ctx, obj, parent) or current
    except (TimeoutError, Busy) as error:
        in_doubt = not answered and not (isinstance(error, Busy) and error.status is not None)
        if in_doubt:  # no answer: the cloud may still be applying it
            await _settle_in_doubt(adapter, ctx, obj, parent, current)
        if isinstance(error, TimeoutError):
            raise DeadlineExceeded(f"changing the {adapter.kind} in the cloud") from None
        raise
    if isinstance(current, LoadBalancer) and current.status == "changing":
        built = await _until_built(ctx, current, deadline)
        return adapter.outcome(obj, built, parent)  # type: ignore[arg-type]  # C is LoadBalancer here
    return adapter.outcome(obj, current, parent)


def _load_balancer_of(parent: Parent | None, current: object) -> str | None:
    if parent is not None:
        return parent.load_balancer
    return current.uuid if isinstance(current, LoadBalancer) else None


def _parent_is_gone(error: Invalid | NotFound) -> bool:
    """The cloud refused a creation because its parent (load balancer or pool) does not exist (any more)."""
    if isinstance(error, NotFound):
        return True  # members are created under their pool's path: 404 = no such pool
    return any(
        name in ("load_balancer", "pool") and any("does not exist" in message for message in messages)
        for name, messages in error.fields.items()
    )


def _created(adapter: Adapter[C], ctx: Context, obj: Resource) -> None:
    if obj.status.get("uuid"):  # it was made before: it is gone
        message = f"the {adapter.kind} was gone from the cloud; re-created it"
        ctx.events(obj, "Normal", "DriftCorrected", message)
    else:
        ctx.events(obj, "Normal", "Created", f"created {adapter.kind} in the cloud")


def _updated(adapter: Adapter[C], ctx: Context, obj: Resource, changes: Any, resync: bool) -> None:
    fields = ", ".join(sorted(changes.model_dump(exclude_unset=True))) if changes is not None else ""
    if resync:
        message = f"the cloud differed from the spec in: {fields}; set back"
        ctx.events(obj, "Normal", "DriftCorrected", message)
    else:
        ctx.events(obj, "Normal", "Updated", f"updated {adapter.kind} in the cloud: {fields}")


def _poll_pauses(ctx: Context) -> Iterator[float]:
    """Pauses between reads of the cloud, which has no watch: 50 ms, a little longer each time, at most
    ``ready_poll``."""
    pause = 0.05
    while True:
        yield pause
        pause = min(pause * 1.5, ctx.settings.ready_poll)


async def until_settled(ctx: Context, load_balancer: str) -> LoadBalancer | None:
    """Read the load balancer until it is not ``changing``; ``None`` if it is gone. Bound it from outside."""
    pauses = _poll_pauses(ctx)
    while True:
        try:
            found = await ctx.cloud.get_load_balancer(load_balancer)
        except NotFound:
            return None
        if found.status != "changing":
            return found
        await asyncio.sleep(next(pauses))


async def _until_built(ctx: Context, created: LoadBalancer, deadline: float) -> LoadBalancer:
    """A new load balancer, once ``running``: waited for under the lock, so its children can start at once.

    Past the deadline the load balancer as it is (still building) is returned; the handler looks again later.
    """
    try:
        async with asyncio.timeout_at(deadline):
            return await until_settled(ctx, created.uuid) or created
    except TimeoutError:
        return created


async def _settle_in_doubt(
    adapter: Adapter[C], ctx: Context, obj: Resource, parent: Parent | None, current: C | None
) -> None:
    """No answer came to a mutation: the cloud may still apply it. Keep the lock until it has settled.

    Bounded by ``handler_timeout`` of its own (the attempt's deadline may be
    spent); past that the lock goes, and the next holder waits for the load
    balancer to stop ``changing`` before it mutates anything. A new load
    balancer whose creation never shows up within that bound was most likely
    never made: the cloud has no idempotency key, so this is the best a client
    can do against creating it twice.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + ctx.settings.handler_timeout):
            load_balancer = _load_balancer_of(parent, current)
            pauses = _poll_pauses(ctx)
            while load_balancer is None:  # a new load balancer: look until its creation lands
                found = await adapter.find(ctx, obj, parent)
                if isinstance(found, LoadBalancer):
                    load_balancer = found.uuid
                else:
                    await asyncio.sleep(next(pauses))
            await until_settled(ctx, load_balancer)
    except (TimeoutError, Busy) as error:
        logger.warning("%s: cannot tell whether the cloud settled (%s); releasing the lock", obj.ref, error)


async def delete(adapter: Adapter[C], ctx: Context, obj: Resource, deadline: float) -> None:
    """Remove the cloud object of ``obj``; one that is already gone (e.g. with its parent) is success."""
    try:
        async with asyncio.timeout_at(deadline):
            try:
                parent = await adapter.parent(ctx, obj)
            except ParentNotReady:
                parent = await _parent_from_status(ctx, obj)
            try:
                current = await adapter.find(ctx, obj, parent)
            except (NotFound, ParentNotReady):
                current = None  # the parent is gone, and its children with it
    except TimeoutError:
        raise DeadlineExceeded("reading the cloud") from None
    if current is None:
        return
    async with serialized(ctx, adapter.lock_key(ctx, obj, parent), obj, deadline) as held:
        try:
            async with asyncio.timeout_at(deadline):
                load_balancer = _load_balancer_of(parent, current)
                if load_balancer is not None:
                    await until_settled(ctx, load_balancer)
                _check(held)
                try:
                    await adapter.delete(ctx, obj, current)
                except NotFound:
                    return
        except TimeoutError:
            raise DeadlineExceeded(f"deleting the {adapter.kind} in the cloud") from None
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
