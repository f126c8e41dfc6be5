"""The one reconcile flow every kind shares: plan first, lock only to mutate, prove before writing.

1. Resolve the parent. A child whose parent is not Ready waits for it, woken
   by the parent's watch event (``ParentWatch``), for part of the attempt;
   then it gives up with ``ParentNotReady`` and is retried.
2. Read the cloud object and compare it with the spec. A cloud object named
   by ``status.uuid`` is this object's only if its UID tag says so (or it has
   none): another object's is never touched (``ForeignCloudObject``).
3. In sync → return the status; no lock is taken (readers never pay for
   writers). An object never made (no ``status.uuid``) skips this read: it
   is looked up by its tag under the lock anyway.
4. Otherwise, under the Lease of the tree's key (``family_key``: the
   LoadBalancer object's UID, which exists before the cloud load balancer
   does, so its creation is locked too), three reads at once (under the
   lock they are the time between one change of the tree and the next):
   the cloud object again (another replica may have done the work
   meanwhile), the load balancer (never mutate while the cloud says it is
   ``changing``: then it is waited for and the other two reads repeated),
   and the **proof of ownership** — the object read afresh: it still exists
   with this UID, is labelled for this replica, is not being deleted and is
   at the generation this attempt works on (``prove``; else
   ``NoLongerOurs``). Then ``held.check()``, and only then mutate. A
   replica that was frozen or cut off while another took its objects over
   can therefore never write an older spec over a newer one, or re-create
   what was deleted meanwhile.
5. A new load balancer is waited for under the lock until it is ``running``;
   a mutation whose answer never came, or came as a 5xx (a gateway may
   answer 502/504 for a change the cloud applied), may still be applied, so
   the lock is kept until the load balancer has settled and a creation is
   looked up by its UID tag before anything is sent again.

Every read, wait and mutation of an attempt is bounded by its deadline
(``asyncio.timeout_at``), and what it does under the lock besides by
``handler_timeout`` from the moment the lock is taken: past either the
attempt ends with ``DeadlineExceeded``, the lock is released, and the
change is retried later.

Level-based and idempotent: running it twice, or on two replicas at once,
changes nothing the second time. Cloud objects carry the Kubernetes object's
UID as a tag, so an object created just before a crash is found, not made twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from kubernetes.aio import client

from lb_operator.cloud import Backend, Busy, CloudError, Invalid, NotFound
from lb_operator.cloud.models import LoadBalancer
from lb_operator.health import WatchHealth
from lb_operator.mutex import Hold, LeaseMutex, Waiting
from lb_operator.reconcile.parents import ParentWatch, Ref, until_set
from lb_operator.reconcile.resources import Resource, ResourceAPI
from lb_operator.reconcile.snapshot import CloudSnapshot
from lb_operator.settings import OperatorSettings
from lb_operator.sharding.streams import Mirror

logger = logging.getLogger(__name__)

UID_TAG = "lboperator-uid"
GLOBAL_KEY = "global"
OBJECT_TAG = "lboperator-object"

EventSink = Callable[[Resource, str, str, str], None]
"""Posts a Kubernetes Event: (object, type ``Normal``/``Warning``, reason, message)."""

WriteHook = Callable[[Resource, str], Awaitable[None]]
"""Told of every write just before it is sent: (object, ``cloud`` or ``status``); the handler journal."""


async def _no_journal(obj: Resource, what: str) -> None:
    return None


class ParentNotReady(Exception):
    """The parent object is missing or not Ready yet: wait, do not call the cloud.

    ``watched``: a change of the parent wakes the waiting child (a parent named
    by reference). A parent named by cloud UUID is not watched: the child backs off.
    """

    def __init__(self, message: str, *, watched: bool = True) -> None:
        super().__init__(message)
        self.watched = watched


class NoLongerOurs(Exception):
    """A fresh read showed that this attempt must not write: the object is gone, made again under
    another UID, being deleted, labelled for another replica, or at a newer generation than the one
    the attempt works on. Whoever owns it now (or the newer generation's handler) does the work."""

    def __init__(self, obj: Resource, why: str, *, gone: bool = False) -> None:
        super().__init__(f"{obj.ref} {why}; left to its owner")
        self.gone = gone  # no object of that name at all (not: one made again under another UID)


class ForeignCloudObject(Exception):
    """``status.uuid`` names a cloud object that another Kubernetes object made: it is never touched."""

    def __init__(self, obj: Resource, uuid: str, owner: str) -> None:
        super().__init__(
            f"the cloud object {uuid} named in status.uuid belongs to another Kubernetes object "
            f"(its {UID_TAG} tag is {owner}, this object's UID is {obj.uid}); nothing was changed. If "
            "this object was restored or copied from another, remove status.uuid (kubectl edit "
            "--subresource=status) to have a cloud object made for it, or delete this object: its "
            "deletion leaves that cloud object alone"
        )
        self.uuid = uuid
        self.owner = owner


class DeadlineExceeded(Exception):
    """The attempt's deadline passed while it was ``doing`` something; the lock is released, retry later."""

    def __init__(self, doing: str) -> None:
        super().__init__(f"the attempt ran out of time while {doing}; it is retried")


PARENT_FIRST_WAIT = 2.0
"""Seconds a child not yet reporting ``ParentNotReady`` waits before it reports it."""

PARENT_WAIT = 10.0
"""Seconds (at most half the attempt) a child waits for its parent before it gives up and is retried,
by default. A change run by ``handlers.pending`` waits for half its bound instead (its handler's retries
await it meanwhile). Waiting here costs nothing; each retry costs Kopf's writes of status and progress,
which loaded the API server when it was 1 s. A drain of the object cuts the wait short
(``Context.leaving``); a deletion withdraws a waiting change (``handlers.pending``)."""


@dataclass
class Context:
    """What every reconcile needs; one per operator process, shared by all handlers."""

    cloud: Backend
    mutex: LeaseMutex | None  # None only when locking is switched off (unsafe)
    settings: OperatorSettings
    resources: ResourceAPI
    events: EventSink = field(default=lambda *_: None)
    api: client.ApiClient | None = None  # owned here so it is closed with the rest
    parents: ParentWatch = field(default_factory=lambda: ParentWatch(None))
    shard: str | None = None  # with sharding: the shard label of the objects this process owns
    leaving: set[str] = field(default_factory=set)  # UIDs being drained away: their waits end at once
    families: dict[str, str] = field(default_factory=dict)  # cloud LB UUID → its lock key (never changes)
    wrote: WriteHook = _no_journal
    health: WatchHealth = field(default_factory=WatchHealth)  # the process's watches, for /healthz
    mirror: Mirror | None = None  # the process's view of its objects (one watch per kind), if any
    snapshot: CloudSnapshot | None = None  # the drift checks' shared lists of the cloud, if any


@dataclass(frozen=True)
class Parent:
    """Where a child object lives in the cloud, and the lock key of its load balancer's tree."""

    load_balancer: str
    family: str
    pool: str | None = None


def family_key(uid: str) -> str:
    """The lock key of a LoadBalancer object's whole tree: ``lb/<its Kubernetes UID>``.

    Keyed on the Kubernetes object, not the cloud UUID, so that it exists
    before the cloud load balancer does (its creation is serialized too: the
    cloud has no idempotency key, and two replicas creating it would make
    two) and never changes while a change may be in flight. The UID, not the
    namespace and name: it is unique (``shop/prod-web`` and ``shop-prod/web``
    are two trees) and it is what the cloud load balancer's UID tag carries, so
    a child that knows only the cloud load balancer finds the same key.
    """
    return f"lb/{uid}"


def family_of(load_balancer: LoadBalancer) -> str:
    """The lock key of a cloud load balancer: its object's family if we made it, else its UUID."""
    uid = load_balancer.tags.get(UID_TAG)
    return family_key(uid) if uid else f"lb/{load_balancer.uuid}"


async def family_by_uuid(ctx: Context, load_balancer: str) -> str:
    """The lock key of a load balancer known by its cloud UUID: one cloud read, then remembered.

    Safe to remember once tagged: a cloud load balancer's UID tag is set when
    it is made and names one Kubernetes object for good. An untagged one is
    read every time, so a tag removed in the console and set back by the
    drift check is seen again.
    """
    family = ctx.families.get(load_balancer)
    if family is None:
        try:
            found = await ctx.cloud.get_load_balancer(load_balancer)
        except NotFound:
            raise ParentNotReady(
                f"load balancer {load_balancer} does not exist in the cloud", watched=False
            ) from None
        family = family_of(found)
        if UID_TAG in found.tags:  # untagged (not ours, or its tag removed in the console): read again
            ctx.families[load_balancer] = family
    return family


@dataclass(frozen=True)
class Outcome:
    """The status to write, and whether the object is Ready.

    ``basis``: the fresh read that proved ownership before a mutation, if the
    attempt made one; the status write is fenced on its resourceVersion.
    """

    status: dict[str, Any]
    ready: bool
    reason: str
    message: str
    basis: Resource | None = None


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
    ctx: Context, key: str | None, obj: Resource, deadline: float, *, deleting: bool = False
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
        try:
            await prove(ctx, obj, deleting=deleting)  # a replica that lost the object says nothing on it
        except NoLongerOurs:
            return
        ctx.events(
            obj, "Normal", "WaitingForLock", f"waiting for {waiting.lease_name} held by {waiting.holder}"
        )

    async with ctx.mutex.hold(key, deadline=deadline, on_wait=on_wait) as held:
        yield held


def _check(held: Hold | None) -> None:
    if held is not None:
        held.check()


WaitingHook = Callable[[ParentNotReady], Awaitable[None]]
"""Told once, ``PARENT_FIRST_WAIT`` into a wait for the parent, that the attempt goes on waiting (to say so
in status); it may raise ``NoLongerOurs`` to end the attempt."""


async def reconcile(
    adapter: Adapter[C],
    ctx: Context,
    obj: Resource,
    deadline: float,
    *,
    resync: bool = False,
    waiting: WaitingHook | None = None,
    parent_wait: float = PARENT_WAIT,
    locked: Callable[[], None] | None = None,
) -> Outcome:
    """Make the cloud match ``obj``; return what to write to its status.

    ``deadline`` bounds the whole attempt, the wait for the lock included;
    the work under the lock is bounded besides by ``handler_timeout`` from
    the moment the lock is taken (a long queue never lets one change hold
    the tree for longer). ``resync``: a periodic drift check; whatever it has
    to change is drift, and is reported as ``DriftCorrected``. ``waiting``:
    see ``WaitingHook``; without it, an object not yet reporting
    ``ParentNotReady`` gives up after ``PARENT_FIRST_WAIT``, so that its
    handler can say so. ``parent_wait``: seconds a child that has said so
    waits for its parent (at most half the attempt). ``locked``: called once
    the lock is held, before anything under it.
    """
    try:
        async with asyncio.timeout_at(deadline):
            parent = await _parent(adapter, ctx, obj, deadline, waiting, parent_wait)
            if resync and ctx.snapshot is not None:
                at_rest = await _at_rest_as_listed(adapter, ctx, ctx.snapshot, obj, parent)
                if at_rest is not None:
                    return at_rest
            # Never made, to our knowledge: straight to the lock, where it is looked up by its tag anyway.
            current = await adapter.find(ctx, obj, parent) if obj.status.get("uuid") else None
    except TimeoutError:
        raise DeadlineExceeded("reading the cloud") from None
    if current is not None and adapter.changes(obj, current) is None:
        return adapter.outcome(obj, current, parent)  # in sync: no lock

    async with serialized(ctx, adapter.lock_key(ctx, obj, parent), obj, deadline) as held:
        if locked is not None:
            locked()
        section = min(deadline, asyncio.get_running_loop().time() + ctx.settings.handler_timeout)
        return await _change(adapter, ctx, obj, parent, held, section, resync)


async def _at_rest_as_listed(
    adapter: Adapter[C], ctx: Context, snapshot: CloudSnapshot, obj: Resource, parent: Parent | None
) -> Outcome | None:
    """The outcome of a drift check that has nothing to do, judged from the shared lists of the cloud
    (``reconcile.snapshot``); ``None`` when they cannot tell, and the object is read afresh.

    Nothing to do: the object is listed under its ``status.uuid``, tagged
    with its UID, in sync with its spec, and its status would be written
    as it is. Anything else goes the way of a fresh read, which changes and
    writes what is needed; a list never does.
    """
    uuid = obj.status.get("uuid")
    scope = parent.pool if parent is not None and parent.pool is not None else ""
    if not uuid:
        return None
    try:
        listed = await snapshot.lookup(adapter.kind, str(uuid), scope)
    except CloudError as error:
        logger.info("%s: the shared list of the cloud could not be read (%s); reading afresh", obj.ref, error)
        return None
    if listed is None or listed.tags.get(UID_TAG) != obj.uid or adapter.changes(obj, listed) is not None:
        return None  # made since the list was read, foreign, or drifted: read afresh
    outcome = adapter.outcome(obj, listed, parent)
    if not outcome.ready or outcome.reason != obj.reason("Ready"):
        return None
    if any(obj.status.get(key) != value for key, value in outcome.status.items()):
        return None  # a status to refresh: from a fresh read, never from a list that may be older
    return outcome


async def _parent(
    adapter: Adapter[C],
    ctx: Context,
    obj: Resource,
    deadline: float,
    waiting: WaitingHook | None,
    parent_wait: float = PARENT_WAIT,
) -> Parent | None:
    """The parent; if it is not Ready, wait (woken by its watch) for part of the attempt, then give up.

    An object not yet reporting ``ParentNotReady`` says so after
    ``PARENT_FIRST_WAIT``, so a person soon sees what it waits for: through
    ``waiting``, which lets the attempt wait on (no retry: Kopf's retry costs
    a write of its progress, and the next attempt reads everything again), or
    without it by giving up that early.
    """
    ref = adapter.parent_ref(obj)
    told = obj.reason("Ready") == "ParentNotReady"
    patience = parent_wait if told or waiting is not None else PARENT_FIRST_WAIT
    loop = asyncio.get_running_loop()
    give_up = loop.time() + min(patience, (deadline - loop.time()) / 2)
    tell_at = None if told or waiting is None else loop.time() + PARENT_FIRST_WAIT
    while True:
        with ctx.parents.expecting(ref) as changed:
            try:
                return await adapter.parent(ctx, obj)
            except ParentNotReady as error:
                if changed is None or obj.uid in ctx.leaving:
                    raise
                if tell_at is not None and waiting is not None:
                    if await until_set(changed, min(tell_at, give_up)):
                        continue  # the parent changed: look again
                    tell_at = None
                    if loop.time() >= give_up:
                        raise
                    await waiting(error)
                    continue  # look again (it may have changed while we wrote), then wait on
                if not await until_set(changed, give_up):
                    raise


def why_not_ours(ctx: Context, obj: Resource, now: Resource | None, *, deleting: bool = False) -> str | None:
    """Why an attempt that began with ``obj`` must not write, now that the object reads ``now``; else None.

    ``deleting``: the attempt is the object's deletion, which is what a
    deletion timestamp asks for; any other attempt leaves a deleting object
    to it. A deletion does not care for the generation (the spec no longer
    matters); any other attempt works on one generation only.
    """
    if now is None or now.uid != obj.uid:
        return "is gone"
    if now.deleting and not deleting:
        return "is being deleted"
    if ctx.shard is not None and now.shard != ctx.shard:
        return f"belongs to replica {now.shard or '(none yet)'} now"
    if not deleting and now.generation != obj.generation:
        return f"changed since this attempt began (generation {obj.generation} → {now.generation})"
    return None


async def prove(ctx: Context, obj: Resource, *, deleting: bool = False) -> Resource:
    """Read the object afresh; return it if this attempt may still write, else raise ``NoLongerOurs``.

    The read is a consistent one (no resourceVersion: etcd's current state),
    so nothing that happened before it can be missed. Called under the
    tree's lock, right before a cloud mutation: together with
    ``held.check()`` it is the proof that this replica, holding a live lock,
    owns this object at this generation.
    """
    now = await ctx.resources.get(obj.kind, obj.namespace, obj.name)
    why = why_not_ours(ctx, obj, now, deleting=deleting)
    if why is not None:
        raise NoLongerOurs(obj, why, gone=now is None)
    assert now is not None
    return now


async def _change(
    adapter: Adapter[C],
    ctx: Context,
    obj: Resource,
    parent: Parent | None,
    held: Hold | None,
    deadline: float,
    resync: bool,
) -> Outcome:
    """Under the lock: read again, wait for the load balancer to settle, prove ownership, mutate, report."""
    try:
        async with asyncio.timeout_at(deadline):
            looked = await _look_under_lock(adapter, ctx, obj, parent)
            current, basis = looked[0], looked[1]
            changes = adapter.changes(obj, current) if current is not None else None
            if current is not None and changes is None:
                return adapter.outcome(obj, current, parent)
    except TimeoutError:
        raise DeadlineExceeded("waiting for the load balancer to stop changing") from None

    await ctx.wrote(basis, "cloud")
    _check(held)  # the last step before the request: a hold that lapsed meanwhile sends nothing
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
        if not answered and might_be_applied(error):
            await _settle_in_doubt(adapter, ctx, obj, parent, current, ctx.settings.handler_timeout)
        if isinstance(error, TimeoutError):
            raise DeadlineExceeded(f"changing the {adapter.kind} in the cloud") from None
        raise
    except asyncio.CancelledError:
        if not answered:  # cancelled with the request on the wire: the next holder must not collide
            settling = asyncio.create_task(
                _settle_in_doubt(adapter, ctx, obj, parent, current, ctx.settings.cloud_request_timeout)
            )
            with contextlib.suppress(Exception):  # whatever it found, the cancellation goes on
                await asyncio.shield(settling)  # a second cancellation ends the wait, not the settling
        raise
    if isinstance(current, LoadBalancer) and current.status == "changing":
        built = await _until_built(ctx, current, deadline)
        outcome: Outcome = adapter.outcome(obj, built, parent)  # type: ignore[arg-type]  # C is LoadBalancer
    else:
        outcome = adapter.outcome(obj, current, parent)
    return dataclasses.replace(outcome, basis=basis)


async def _look_under_lock(
    adapter: Adapter[C], ctx: Context, obj: Resource, parent: Parent | None
) -> tuple[C | None, Resource]:
    """Under the lock: the cloud object (another replica may have made the change meanwhile), read once
    the load balancer is not ``changing`` (never mutate while it is), and the proof of ownership.

    The three reads go at once: under the lock they are the time between one
    change of the tree and the next. Should the load balancer be ``changing``,
    it is waited for, and the object read and proven again after: what the
    change under way did counts, and the proof stays the last read before the
    mutation.
    """
    load_balancer = parent.load_balancer if parent is not None else None
    if load_balancer is None:  # the load balancer itself: its own read says whether it is changing
        current, basis = await _together(adapter.find(ctx, obj, parent), prove(ctx, obj))
        if not (isinstance(current, LoadBalancer) and current.status == "changing"):
            return current, basis
        await until_settled(ctx, current.uuid)
    else:
        current, settled, basis = await _together(
            adapter.find(ctx, obj, parent), _settled_now(ctx, load_balancer), prove(ctx, obj)
        )
        if settled:
            return current, basis
        if await until_settled(ctx, load_balancer) is None:
            raise _load_balancer_gone(load_balancer)
    again: tuple[C | None, Resource] = await _together(adapter.find(ctx, obj, parent), prove(ctx, obj))
    return again


async def _settled_now(ctx: Context, load_balancer: str) -> bool:
    """One read: whether the load balancer is not ``changing``; ``ParentNotReady`` if it is gone."""
    try:
        return (await ctx.cloud.get_load_balancer(load_balancer)).status != "changing"
    except NotFound:
        raise _load_balancer_gone(load_balancer) from None


def _load_balancer_gone(load_balancer: str) -> ParentNotReady:
    """Nothing is sent under a load balancer gone from the cloud: cloudscale would answer a creation
    404, but Octavia keeps a deleted one as ``DELETED`` and answers 409 (busy), as if it were changing."""
    return ParentNotReady(f"the parent is gone from the cloud: load balancer {load_balancer}")


async def _together(*reads: Awaitable[Any]) -> Any:
    """The results of ``reads``, run at once; the first error cancels the others and propagates as it is."""
    tasks = [asyncio.ensure_future(read) for read in reads]
    try:
        return tuple(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def might_be_applied(error: BaseException) -> bool:
    """Whether a mutation that failed with ``error`` may still have been applied by the cloud.

    No answer (a timeout, a cut connection) or a 5xx (a gateway answers 502
    or 504 for a request its backend went on to apply): in doubt. A 409, 429,
    408 or 425 is the cloud refusing to start it: not applied.
    """
    if isinstance(error, Busy):
        return error.status is None or error.status >= 500
    return isinstance(error, TimeoutError)


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
    elif adapter.kind == "LoadBalancer":
        # Only the tree's root: a child's creation is in its status (uuid, Ready), and an Event per
        # child was one more API write per cloud change (about a third of a fleet's writes).
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
    adapter: Adapter[C],
    ctx: Context,
    obj: Resource,
    parent: Parent | None,
    current: C | None,
    bound: float,
) -> None:
    """A mutation may have been applied without our knowing: keep the lock until the cloud has settled.

    Bounded by ``bound`` seconds of its own (the attempt's deadline may be
    spent; a cancelled attempt gets the cloud's request bound). A change
    under a load balancer: until the load balancer stops
    ``changing``. A new load balancer: looked up by its UID tag for as long
    as the cloud may still be working on a request we gave up on
    (``cloud_request_timeout``), then until it settles. The next attempt
    finds by the tag whatever was made, so nothing is created twice; past
    these bounds the lock goes, and the next holder waits for the load
    balancer to stop ``changing`` before it mutates anything.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + bound):
            load_balancer = _load_balancer_of(parent, current)
            if load_balancer is None:  # a new load balancer: look until its creation shows up
                look_until = loop.time() + ctx.settings.cloud_request_timeout
                pauses = _poll_pauses(ctx)
                while load_balancer is None and loop.time() < look_until:
                    found = await adapter.find(ctx, obj, parent)
                    if isinstance(found, LoadBalancer):
                        load_balancer = found.uuid
                    else:
                        await asyncio.sleep(next(pauses))
            if load_balancer is not None:
                await until_settled(ctx, load_balancer)
    except (TimeoutError, Busy) as error:
        logger.warning("%s: cannot tell whether the cloud settled (%s); releasing the lock", obj.ref, error)


async def delete(adapter: Adapter[C], ctx: Context, obj: Resource, deadline: float) -> None:
    """Remove the cloud object of ``obj``; one that is already gone (e.g. with its parent) is success.

    The cloud is read under the tree's lock, so a creation another task or
    replica made under it (a drift check re-creating the object, a frozen
    ex-owner's request that was already on the wire) is seen and deleted, not
    left behind. A cloud object named in ``status.uuid`` that belongs to
    another Kubernetes object is left alone. Before deleting, the deletion
    proves that this replica still owns the object (``NoLongerOurs``; ``gone``
    if another replica finished the deletion meanwhile).
    """
    try:
        async with asyncio.timeout_at(deadline):
            try:
                parent = await adapter.parent(ctx, obj)
            except ParentNotReady:
                parent = await _parent_from_status(ctx, obj)
    except TimeoutError:
        raise DeadlineExceeded("reading the cloud") from None
    async with serialized(ctx, adapter.lock_key(ctx, obj, parent), obj, deadline, deleting=True) as held:
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    current = await adapter.find(ctx, obj, parent)
                except (NotFound, ParentNotReady):
                    current = None  # the parent is gone, and its children with it
                except ForeignCloudObject as foreign:
                    await prove(ctx, obj, deleting=True)
                    message = f"deleted without touching the cloud: {foreign}"
                    ctx.events(obj, "Warning", "Conflict", message)
                    return
                if current is None:
                    return
                load_balancer = _load_balancer_of(parent, current)
                if load_balancer is not None:
                    await until_settled(ctx, load_balancer)
                basis = await prove(ctx, obj, deleting=True)
                await ctx.wrote(basis, "cloud")
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
        family = await family_by_uuid(ctx, str(lb))
    except ParentNotReady:
        return None
    return Parent(load_balancer=str(lb), family=family, pool=obj.status.get("poolUUID"))
