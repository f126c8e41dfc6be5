"""Listing and following this operator's objects, for sharding and reports (not for Kopf)."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.watch import Watch

from lb_operator.api import ALL_KINDS, GROUP, VERSION, Kind
from lb_operator.health import WatchHealth

logger = logging.getLogger(__name__)

TRANSIENT = (ApiException, aiohttp.ClientError, OSError, TimeoutError)
"""Errors talking to the API server that trying again may cure (aiohttp's are not all OSErrors)."""

API_TIMEOUT = 30.0
"""Seconds one request of the sharding machinery may take (the client's default is 300 s: a sharder
would keep its lock and do nothing meanwhile)."""

WATCH_SECONDS = 60
"""Seconds the server keeps one watch stream open; it is then resumed. Bookmarks are asked for, so
even an idle stream speaks about once a minute."""

WATCH_SILENCE = WATCH_SECONDS + 15.0
"""Seconds a stream may last at most: the server ends each one after ``WATCH_SECONDS``, so one still open
then is a half-open connection, cut here and opened again."""


def scopes(namespaces: list[str]) -> list[str | None]:
    """The namespaces to list and watch; ``[None]``: the whole cluster."""
    return list(namespaces) or [None]


async def list_objects(
    objects: client.CustomObjectsApi, namespaces: list[str], label_selector: str = ""
) -> list[tuple[Kind, dict[str, Any]]]:
    """Every object of the five kinds in ``namespaces`` (empty: the cluster), each with its kind.

    One LIST per kind and namespace; each body has ``kind`` set (lists leave it out).
    """
    found: list[tuple[Kind, dict[str, Any]]] = []
    for kind in ALL_KINDS:
        for namespace in scopes(namespaces):
            if namespace is None:
                listing = await objects.list_cluster_custom_object(
                    GROUP, VERSION, kind.plural, label_selector=label_selector, _request_timeout=API_TIMEOUT
                )
            else:
                listing = await objects.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    kind.plural,
                    label_selector=label_selector,
                    _request_timeout=API_TIMEOUT,
                )
            assert isinstance(listing, dict), "a list of custom objects is a JSON object"
            for item in listing.get("items", []):
                item.setdefault("kind", kind.kind)
                found.append((kind, item))
    return found


UNREAD = ("managedFields",)
"""Metadata no follower's listener reads, dropped from every object as it arrives."""

UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without what nobody here reads (``UNREAD``): server-side apply's field owners and
    kubectl's copy of the last applied manifest are most of an object's size, and every replica keeps
    every object of its kinds in memory (``Mirror``)."""
    metadata = body.get("metadata") or {}
    for key in UNREAD:
        metadata.pop(key, None)
    annotations = metadata.get("annotations")
    if annotations:
        for key in UNREAD_ANNOTATIONS:
            annotations.pop(key, None)
    return body


OnEvent = Callable[[str, dict[str, Any]], None]
"""Told each event: its type (ADDED, MODIFIED, DELETED) and the object."""

LIST_PAGE = 500
"""Objects per LIST page when a follower (re)lists: the API server never builds one huge answer."""

RELIST_INTERVAL = 15 * 60.0
"""Seconds after which a follower lists again although nothing asked for it: an event the API server
never sent (no 410 to say so) is then corrected within this bound. Cheap next to a LIST per stream."""

EARLY_END = 1.0
"""A stream that ends with nothing within this many seconds is taken for broken (a proxy that refuses
long requests), and retried with back-off. A quiet stream cut later by an idle timeout is not broken:
it is resumed where it was."""


@dataclass
class Following:
    """What one follower cost and saw: how often it listed, opened streams, and delivered events."""

    lists: int = 0
    streams: int = 0
    events: int = 0
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first LIST was delivered: from then on the follower's view is complete."""


async def follow_forever(
    objects: client.CustomObjectsApi,
    plural: str,
    namespace: str | None,
    on_event: OnEvent,
    *,
    label_selector: str = "",
    on_gap: Callable[[], None] = lambda: None,
    health: WatchHealth | None = None,
    name: str = "",
    following: Following | None = None,
) -> None:
    """Follow ``plural`` in ``namespace`` (``None``: the cluster) until cancelled, as an informer does.

    It lists once (``ADDED`` per object) and then watches from the list's
    resourceVersion; a stream the server ends (every ``WATCH_SECONDS``) or
    that broke is resumed from the last resourceVersion seen — bookmarks
    keep it current — so nothing is delivered twice and nothing is missed.
    It lists again when the server no longer has that version (410 Gone), and
    every ``RELIST_INTERVAL`` in any case: objects gone meanwhile are
    delivered as ``DELETED`` and ``on_gap`` is called. A stream still open at
    ``WATCH_SILENCE`` is a half-open connection: cut and resumed. One that
    ends within ``EARLY_END`` with nothing counts as broken (back-off, no
    sign of life). ``health`` is told of every sign of
    life under ``name`` (what the follower is for) with the plural and namespace.
    Objects are delivered ``slim``.
    """
    name = f"{name or 'watch'} {plural} {namespace or '*'}"
    bound = 2 * WATCH_SILENCE  # a failed stream is retried within 5 s: two silences mean it cannot connect
    following = following if following is not None else Following()
    known: dict[str, dict[str, Any]] = {}  # uid → the object as last delivered (for DELETED after a relist)
    version: str | None = None  # where the next stream resumes; None: list first
    listed_at = 0.0
    pause = 0.05
    loop = asyncio.get_running_loop()
    if health is not None:
        health.alive(name, bound)  # from now on it must show life: one that never connects turns stale
    scope: list[Any] = [] if namespace is None else [namespace]
    listing = (
        objects.list_cluster_custom_object if namespace is None else objects.list_namespaced_custom_object
    )
    try:
        while True:
            try:
                if version is not None and loop.time() - listed_at > RELIST_INTERVAL:
                    version = None  # a routine look at everything: corrects what no event told
                if version is None:
                    version = await _relist(listing, scope, plural, label_selector, known, on_event)
                    listed_at = loop.time()
                    following.lists += 1
                    if following.synced.is_set():
                        on_gap()  # a second list: what was missed in between was just delivered
                    following.synced.set()
                    if health is not None:
                        health.alive(name, bound)
                opened, delivered = loop.time(), False
                watch = Watch()  # type: ignore[no-untyped-call]
                stream = watch.stream(  # type: ignore[no-untyped-call]
                    listing,
                    GROUP,
                    VERSION,
                    *scope,
                    plural,
                    label_selector=label_selector,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=WATCH_SILENCE,  # the whole stream: the server ends it before
                )
                following.streams += 1
                async with watch:
                    async for event in stream:
                        delivered = True
                        if health is not None:
                            health.alive(name, bound)
                        kind, body = str(event["type"]), event["object"]
                        version = str(body["metadata"]["resourceVersion"])
                        if kind == "BOOKMARK":
                            continue
                        slim(body)
                        uid = str(body["metadata"]["uid"])
                        if kind == "DELETED":
                            known.pop(uid, None)
                        else:
                            known[uid] = body
                        following.events += 1
                        on_event(kind, body)
                if not delivered and loop.time() - opened < min(EARLY_END, WATCH_SECONDS / 2):
                    # Ended at once with nothing (a proxy cutting long requests): not a working watch.
                    raise aiohttp.ClientPayloadError("the watch stream ended at once with nothing")
                if health is not None:
                    health.alive(name, bound)  # the server ended the stream on time: the connection works
                pause = 0.05
            except ApiException as error:
                if error.status == 410:
                    logger.info("watch of %s: version %s is gone; listing again", plural, version)
                    version = None
                    continue
                logger.info("watch of %s interrupted (%s); again", plural, error)
                pause = await _back_off(pause)
            except TRANSIENT as error:
                logger.info("watch of %s interrupted (%s); again", plural, error)
                pause = await _back_off(pause)
            except Exception:  # never die silently: whoever relies on this watch would wait for nothing
                logger.exception("watch of %s failed unexpectedly; listing again", plural)
                version = None
                await asyncio.sleep(5.0 * random.uniform(0.8, 1.2))
    finally:
        if health is not None:
            health.forget(name)


async def _back_off(pause: float) -> float:
    await asyncio.sleep(pause * random.uniform(0.8, 1.2))
    return min(pause * 2, 5.0)


async def _relist(
    listing: Callable[..., Any],
    scope: list[Any],
    plural: str,
    label_selector: str,
    known: dict[str, dict[str, Any]],
    on_event: OnEvent,
) -> str:
    """List in pages; deliver what is there (ADDED) and what went away since ``known`` (DELETED).

    Returns the list's resourceVersion, where the watch resumes.
    """
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await listing(
            GROUP,
            VERSION,
            *scope,
            plural,
            label_selector=label_selector,
            limit=LIST_PAGE,
            _continue=token,
            _request_timeout=API_TIMEOUT,
        )
        assert isinstance(page, dict), "a list of custom objects is a JSON object"
        items.extend(slim(item) for item in page.get("items", []))
        metadata = page.get("metadata") or {}
        token = metadata.get("continue") or None
        if token is None:
            version = str(metadata["resourceVersion"])
            break
    present = {str(item["metadata"]["uid"]): item for item in items}
    for uid in [uid for uid in known if uid not in present]:
        on_event("DELETED", known.pop(uid))
    for uid, item in present.items():
        known[uid] = item
        on_event("ADDED", item)
    return version


Body = dict[str, Any]
Listener = Callable[[str, str, Body], None]
"""Told each change: the object's kind (``LoadBalancer``…), the event type, and the object."""


class Mirror:
    """This replica's view of its objects: one follower per kind and namespace, shared by every consumer.

    The sharder (while elected), the drains and the parent wake-ups all
    listen here instead of each opening watches of their own, so a replica
    runs at most one watch per kind and namespace besides Kopf's, and lists
    each once when it starts (again after a 410, and every
    ``RELIST_INTERVAL``). Listeners are called
    synchronously on the event loop, in the order of the events of one
    kind; one that raises is logged and the rest still hear.
    """

    def __init__(
        self,
        objects: client.CustomObjectsApi | None,
        namespaces: list[str],
        kinds: list[Kind] | None = None,
        health: WatchHealth | None = None,
    ) -> None:
        self._objects = objects
        self._namespaces = namespaces
        self._kinds = list(ALL_KINDS if kinds is None else kinds)
        self._health = health
        self._views: dict[str, dict[str, Body]] = {kind.kind: {} for kind in self._kinds}
        self._listeners: list[tuple[Listener, Callable[[], None]]] = []
        self.following = [Following() for _ in self._kinds for _ in scopes(namespaces)]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def lists(self) -> int:
        """LIST requests made so far (one per kind and namespace at the start, then one per relist)."""
        return sum(following.lists for following in self.following)

    def synced(self) -> bool:
        """Whether every follower has listed once: from then on the view is complete."""
        return all(following.synced.is_set() for following in self.following)

    def bodies(self, kind: str | None = None) -> list[Body]:
        """The objects as last seen (of ``kind``, or all). Shared: read them, never change them."""
        if kind is not None:
            return list(self._views[kind].values())
        return [body for view in self._views.values() for body in view.values()]

    def body(self, kind: str, uid: str) -> Body | None:
        """The object ``uid`` of ``kind`` as last seen, if it is there. Shared: read it, never change it."""
        return self._views.get(kind, {}).get(uid)

    def listen(self, on_event: Listener, on_gap: Callable[[], None] = lambda: None) -> Callable[[], None]:
        """Hear every change from now on (and ``on_gap`` after a relist); returns the call that stops it."""
        entry = (on_event, on_gap)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    def start(self) -> None:
        if self._objects is None or self._tasks:
            return
        scoped = [(kind, namespace) for kind in self._kinds for namespace in scopes(self._namespaces)]
        for (kind, namespace), following in zip(scoped, self.following, strict=True):
            self._tasks.append(
                asyncio.create_task(
                    follow_forever(
                        self._objects,
                        kind.plural,
                        namespace,
                        functools.partial(self._deliver, kind.kind),
                        on_gap=self._gap,
                        health=self._health,
                        name="objects",
                        following=following,
                    ),
                    name=f"mirror {kind.plural} {namespace or '*'}",
                )
            )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _deliver(self, kind: str, event: str, body: Body) -> None:
        body.setdefault("kind", kind)  # list items may leave it out
        uid = str(body["metadata"]["uid"])
        if event == "DELETED":
            self._views[kind].pop(uid, None)
        else:
            self._views[kind][uid] = body
        for on_event, _ in list(self._listeners):
            try:
                on_event(kind, event, body)
            except Exception:
                logger.exception("a listener of %s events failed; the others still hear", kind)

    def _gap(self) -> None:
        for _, on_gap in list(self._listeners):
            try:
                on_gap()
            except Exception:
                logger.exception("a listener failed after a relist")
