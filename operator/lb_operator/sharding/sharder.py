"""The sharder: labels every object with the live member that owns its load balancer's tree.

One sharder works at a time. Every replica runs a candidate that waits for
the ``sharder`` lock of the Lease mutex, so a successor takes over within
milliseconds of a clean hand-over and one lease duration after a crash
(watch-driven, never polled).

Level-based: each pass computes each object's owner by rendezvous hashing
of its root key over the live members, and writes only the labels that
differ, ``WRITE_CONCURRENCY`` at a time, each write carrying the
resourceVersion it read (a conflict means the sharder's view was behind: the
object is read afresh and the next pass decides again). The objects come
from the replica's ``Mirror`` (one follower per kind: one LIST at start, then
watches resumed from their resourceVersion), so a pass costs no API request
but its writes. A pass runs when an object comes,
goes or changes what its placement depends on, when the set of members
changes (a join, a leave — not a renewal: renewals only move the next
predicted expiry), and at that expiry. A pass writes at most
``PASS_WRITES`` labels, load balancers first, then pools, then the rest: a
burst of new objects is labelled in short passes, each taking the newest
roots first.

Who is alive is judged from the mutex's Lease cache, which a stalled watch
would leave stale: every member would seem expired. So a pass runs only
while the cache is proven fresh (``LeaseWatch.fresh_within``), and a member
whose objects would move because it seems gone is read afresh first: one
that renewed meanwhile keeps its objects.

Moves:

- unassigned, or owned by a member that is gone → labelled with its owner at once;
- owned by a live member but hashing elsewhere (a member joined) → labelled
  ``drain``; the owner removes both labels once no handler of its own runs on
  it (``sharding.drain``), and the next pass assigns it to its new owner;
- hashing back to its owner while draining → the drain label is removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.mutex import HoldLost, LeaseMutex, LockTimeout, lease_name
from lb_operator.mutex.leases import Missing, Unavailable
from lb_operator.mutex.records import parse_resource_version
from lb_operator.sharding import DRAIN_LABEL, FINALIZER, SHARD_LABEL, metrics
from lb_operator.sharding.members import MEMBER_PREFIX, live_members
from lb_operator.sharding.ring import owner
from lb_operator.sharding.roots import Body, root_of
from lb_operator.sharding.streams import API_TIMEOUT, TRANSIENT, Mirror

logger = logging.getLogger(__name__)

SHARDER_KEY = "sharder"
BATCH_WINDOW = 0.1
"""Seconds to gather more news after the first before a pass: a burst of events costs one pass."""
WRITE_CONCURRENCY = 10
"""Label writes in flight at once in a pass."""
PASS_WRITES = 5 * WRITE_CONCURRENCY
"""Label writes at most in one pass; the rest go in the next, right after (with whatever arrived meanwhile,
roots first). Measured: under a 720-object burst on 2 cores, passes of 431 writes took 13 s, during which
newly created load balancers waited, unlabelled, while their children were being labelled."""
RANK = {"LoadBalancer": 0, "LoadBalancerPool": 1}
"""The order of a pass's writes by kind (others after): a child can do nothing before its parent."""
STALE_RECHECK = 0.5
"""Seconds between looks at the Lease cache while it is not proven fresh (no API request is made)."""
UNREAD_RETRY = 1.0
"""Seconds before a pass looks again at an object whose write was refused and whose fresh read failed."""
_FOREVER = 10 * 365 * 24 * 3600.0


@dataclass(frozen=True)
class Move:
    """One label write a pass decided on: ``shard`` (``None``: unchanged) and ``drain`` (``None``: remove);
    ``finalizers``: the object's finalizers with ``FINALIZER`` added (``None``: unchanged)."""

    plural: str
    namespace: str
    name: str
    resource_version: str
    labels: dict[str, str | None]
    uid: str = ""
    kind: str = ""
    finalizers: list[str] | None = None


def plan(bodies: list[Body], members: set[str]) -> list[Move]:
    """The label writes that bring ``bodies`` to their owners among ``members`` (pure: no I/O)."""
    if not members:
        return []  # nobody to give anything to: leave every label as it is
    pools = {
        (b["metadata"]["namespace"], b["metadata"]["name"]): b
        for b in bodies
        if b["kind"] == "LoadBalancerPool"
    }
    plurals = {kind.kind: kind.plural for kind in ALL_KINDS}
    moves = []
    for body in bodies:
        metadata = body["metadata"]
        labels = metadata.get("labels") or {}
        current, draining = labels.get(SHARD_LABEL), DRAIN_LABEL in labels
        wanted = owner(root_of(body, lambda ns, name: pools.get((ns, name))), members)
        change: dict[str, str | None] | None = None
        if current is None or current not in members:
            if current != wanted or draining:
                change = {SHARD_LABEL: wanted, DRAIN_LABEL: None}
        elif current != wanted and not draining:
            change = {DRAIN_LABEL: "true"}
        elif current == wanted and draining:
            change = {DRAIN_LABEL: None}
        if change is not None:
            finalizers = list(metadata.get("finalizers") or [])
            add_finalizer = (
                SHARD_LABEL in change
                and FINALIZER not in finalizers
                and not metadata.get("deletionTimestamp")
            )
            moves.append(
                Move(
                    plurals[body["kind"]],
                    metadata["namespace"],
                    metadata["name"],
                    str(metadata["resourceVersion"]),
                    change,
                    str(metadata.get("uid", "")),
                    body["kind"],
                    [*finalizers, FINALIZER] if add_finalizer else None,
                )
            )
    moves.sort(key=lambda move: RANK.get(move.kind, len(RANK)))  # stable: otherwise in the view's order
    return moves


class Sharder:
    """A candidate for sharder; ``run()`` until cancelled. While elected, it keeps labels right."""

    def __init__(
        self,
        api: client.ApiClient,
        mutex: LeaseMutex,
        mirror: Mirror,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._mutex = mutex
        self._mirror = mirror
        self._dirty = asyncio.Event()
        self.passes = 0
        self.writes = 0
        self.refreshes = 0  # objects read afresh after a write found the view behind (409)
        self.stale_skips = 0  # passes not run: the Lease cache was not proven fresh
        self.confirmed_alive = 0  # members that seemed gone but a fresh read showed alive
        self._members: set[str] = set()
        self._shapes: dict[str, tuple[Any, ...]] = {}  # object UID → what its placement depends on
        self._newer: dict[str, Body | None] = {}  # UID → what a write or read showed (None: gone) until
        # the mirror brings news of that object
        self._owed = False  # a pass was due but could not run (view incomplete, cache stale): run it later

    @property
    def lists(self) -> int:
        """LIST requests behind the sharder's view (the mirror's: one per kind at start, one per relist)."""
        return self._mirror.lists

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._mutex.hold(SHARDER_KEY, deadline=loop.time() + _FOREVER) as held:
                    logger.info("sharder: elected (%s)", self._mutex.identity)
                    metrics.LEADER.set(1)
                    try:
                        await self._lead(held.check)
                    finally:
                        logger.info(
                            "sharder: stepping down after %d passes, %d LIST requests, %d label writes",
                            self.passes,
                            self.lists,
                            self.writes,
                        )
            except (HoldLost, LockTimeout) as error:
                logger.warning("sharder: %s; standing again", error)
            finally:
                metrics.LEADER.set(0)

    async def _lead(self, check: Callable[[], None]) -> None:
        changes = self._mutex.watch.listen(MEMBER_PREFIX)
        unlisten = self._mirror.listen(self._changed, on_gap=self._dirty.set)
        self._newer = {}
        self._shapes = {uid_of(body): _placement(body) for body in self._mirror.bodies()}
        self._dirty.set()  # a new term: look at everything once
        try:
            next_expiry: float | None = None
            while True:
                check()
                changes.clear()  # before deciding: news that comes during the pass wakes the next wait
                if self._dirty.is_set() or self._owed or not self._fresh() or self._members_changed():
                    self._dirty.clear()
                    try:
                        next_expiry = await self._pass(check)
                    except TRANSIENT as error:
                        logger.warning("sharder: pass failed (%s); again shortly", error)
                        self._dirty.set()
                        await asyncio.sleep(1.0)
                        continue
                else:  # only renewals: no pass, but the first expiry moved
                    next_expiry = min(live_members(self._mutex.watch).values(), default=None)
                await self._until_news(changes, next_expiry)
        finally:
            self._mutex.watch.unlisten(changes)
            unlisten()

    def _members_changed(self) -> bool:
        """Whether the live members differ from the last pass's: a join, a leave, or an expiry.

        A renewal changes nothing here (the member stays live), so it costs no pass.
        """
        return set(live_members(self._mutex.watch)) != self._members

    def _fresh(self) -> bool:
        """Whether the Lease cache is proven current (else who is alive cannot be told from it)."""
        settings = self._mutex.settings
        return self._mutex.watch.fresh_within(settings.renew_interval + settings.watch_stall_timeout)

    def _changed(self, kind: str, event: str, body: Body) -> None:
        """A pass is due only if an object came, went, or changed what its placement depends on.

        Status writes (most events) move nothing, so they cost no pass.
        """
        uid = uid_of(body)
        self._newer.pop(uid, None)  # the mirror caught up with this object
        if event == "DELETED":
            self._shapes.pop(uid, None)
            self._dirty.set()
            return
        shape = _placement(body)
        if self._shapes.get(uid) != shape:
            self._shapes[uid] = shape
            self._dirty.set()

    async def _until_news(self, changes: asyncio.Event, until: float | None) -> None:
        waits = [asyncio.ensure_future(self._dirty.wait()), asyncio.ensure_future(changes.wait())]
        try:
            timeout = None if until is None else max(0.0, until - asyncio.get_running_loop().time()) + 0.05
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if done and self._dirty.is_set():
                await asyncio.sleep(BATCH_WINDOW)  # let the rest of a burst arrive
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _pass(self, check: Callable[[], None]) -> float | None:
        """One pass; returns when to look again (loop time): the next member expiry, or soon if stale.

        ``check`` (the sharder lock's) runs before each write: a sharder that
        lost its lock writes nothing more.
        """
        watch, loop = self._mutex.watch, asyncio.get_running_loop()
        if not self._fresh():
            if self.stale_skips % 20 == 0:
                logger.warning("sharder: the Lease cache is not proven fresh; no objects move until it is")
            self.stale_skips += 1
            self._owed = True
            return loop.time() + STALE_RECHECK
        if not self._mirror.synced():
            self._owed = True  # the view is not complete yet: its first LISTs are under way
            return loop.time() + STALE_RECHECK
        self._owed = False
        members = live_members(watch)
        bodies = self._view()
        self.passes += 1
        labelled = {(b["metadata"].get("labels") or {}).get(SHARD_LABEL) for b in bodies}
        members.update(await self._still_alive({m for m in labelled if m} - set(members)))
        self._count_member_changes(set(members))
        moves = plan(bodies, set(members))
        more = len(moves) > PASS_WRITES
        if more:
            moves = moves[:PASS_WRITES]
            self._dirty.set()  # the rest in the next pass
        await self._write_all(moves, check)
        if moves:
            logger.info(
                "sharder: %d label writes for %d objects over members %s%s",
                len(moves),
                len(bodies),
                sorted(members),
                "; more in the next pass" if more else "",
            )
        metrics.OBJECTS.clear()
        for body in self._view():  # as the writes left them
            shard = (body["metadata"].get("labels") or {}).get(SHARD_LABEL)
            if shard in members:
                metrics.OBJECTS.labels(member=shard).inc()
        expiry = min(members.values(), default=None)
        if self._owed:  # a write found our view behind and the object could not be read: again soon
            soon = loop.time() + UNREAD_RETRY
            return soon if expiry is None else min(expiry, soon)
        return expiry

    async def _still_alive(self, seeming_gone: set[str]) -> dict[str, float]:
        """Of the members that seem gone but still own objects, those a fresh read shows alive (→ expiry).

        A member whose Lease is missing, unheld, or unchanged since we saw it
        (so not renewed for a lease duration by our clock) is gone; one with a
        newer version renewed since — our cache missed it — and is alive.
        """
        alive: dict[str, float] = {}
        watch, loop = self._mutex.watch, asyncio.get_running_loop()
        for member in sorted(seeming_gone):
            try:
                found = await self._mutex.api.get(lease_name(MEMBER_PREFIX + member), "member")
            except Missing:
                continue
            except Unavailable as error:
                # Cannot tell: treat as alive this pass, so nothing moves on a guess.
                logger.info("sharder: cannot read member %s (%s); its objects stay this pass", member, error)
                alive[member] = loop.time() + 1.0
                continue
            observed = watch.observe(found)
            if observed.record.holder and loop.time() < observed.expires_at():
                self.confirmed_alive += 1
                logger.warning("sharder: member %s seemed gone but renewed since; its objects stay", member)
                alive[member] = observed.expires_at()
        return alive

    def _count_member_changes(self, members: set[str]) -> None:
        for member in members - self._members:
            metrics.MEMBER_CHANGES.labels(how="join").inc()
            logger.info("sharder: member %s joined", member)
        for member in self._members - members:
            metrics.MEMBER_CHANGES.labels(how="leave").inc()
            logger.info("sharder: member %s left", member)
        self._members = members

    async def _write_all(self, moves: list[Move], check: Callable[[], None]) -> None:
        """Write ``moves``, ``WRITE_CONCURRENCY`` at a time (a dead replica's objects all move in one pass).

        The first failure is raised once every write has ended: a lost lock
        (``check``) or an API server that does not answer ends the pass.
        """
        slots = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def write(move: Move) -> None:
            async with slots:
                check()
                await self._write(move)

        outcomes = await asyncio.gather(*(write(move) for move in moves), return_exceptions=True)
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed

    async def _write(self, move: Move) -> None:
        metadata: dict[str, Any] = {"resourceVersion": move.resource_version, "labels": move.labels}
        if move.finalizers is not None:
            # The whole list, as a merge patch replaces lists: safe under the resourceVersion precondition.
            metadata["finalizers"] = move.finalizers
        body = {"metadata": metadata}
        try:
            written = await self._objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                move.namespace,
                move.plural,
                move.name,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as error:
            if error.status in (404, 409):
                if await self._refresh(move):  # changed or gone since our view of it: look again
                    self._dirty.set()
                return
            raise
        self._remember(move, written)
        self.writes += 1
        kind = "drain" if move.labels.get(DRAIN_LABEL) else "assign"
        metrics.MOVES.labels(how=kind).inc()

    def _view(self) -> list[Body]:
        """The mirror's objects, with what this sharder learned since that is newer (its writes' answers,
        fresh reads); what the mirror has caught up with, or no longer holds, is forgotten."""
        bodies: list[Body] = []
        present = set()
        for body in self._mirror.bodies():
            uid = uid_of(body)
            present.add(uid)
            if uid not in self._newer:
                bodies.append(body)
                continue
            newer = self._newer[uid]
            if newer is None:
                continue  # a fresh read found it gone; the mirror's DELETED is on its way
            if _version(newer) > _version(body):
                bodies.append(newer)
            else:  # the mirror caught up (its event came before our write's answer was seen)
                del self._newer[uid]
                bodies.append(body)
        for uid in [uid for uid in self._newer if uid not in present]:
            del self._newer[uid]
        return bodies

    def _remember(self, move: Move, written: object) -> None:
        """Our write's answer is the object as it now is, until the mirror has news of it."""
        if isinstance(written, dict) and move.uid:
            written.setdefault("kind", move.kind)
            self._newer[move.uid] = written
            self._shapes[move.uid] = _placement(written)  # its echo from the mirror is no news: no pass

    async def _refresh(self, move: Move) -> bool:
        """Read one object afresh after a write found our view of it behind (so the next pass is right).

        ``False`` when it could not be read: the pass asks to look again after ``UNREAD_RETRY``.
        """
        self.refreshes += 1
        try:
            body = await self._objects.get_namespaced_custom_object(
                GROUP, VERSION, move.namespace, move.plural, move.name, _request_timeout=API_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404 and move.uid:
                self._newer[move.uid] = None
                return True
            self._owed = True  # could not read it: look again a little later, not at once
            return False
        except TRANSIENT:
            self._owed = True
            return False
        if not move.uid or not isinstance(body, dict):
            return True
        if uid_of(body) != move.uid:
            self._newer[move.uid] = None  # deleted and made again under the same name: ours is gone
            return True
        body.setdefault("kind", move.kind)
        self._newer[move.uid] = body
        return True


def uid_of(body: Body) -> str:
    return str(body["metadata"]["uid"])


def _version(body: Body) -> int:
    return parse_resource_version(str(body["metadata"]["resourceVersion"]))


def _placement(body: Body) -> tuple[Any, ...]:
    """What an object's owner depends on: its labels and the references that make its root key."""
    metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
    labels = metadata.get("labels") or {}
    refs = tuple(
        str(spec.get(field)) for field in ("loadBalancerRef", "loadBalancerUUID", "poolRef", "poolUUID")
    )
    return (labels.get(SHARD_LABEL), labels.get(DRAIN_LABEL), *refs)
