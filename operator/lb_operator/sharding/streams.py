"""Listing and following this operator's objects, for sharding and reports (not for Kopf)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
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


OnEvent = Callable[[str, dict[str, Any]], None]
"""Told each event: its type (ADDED, MODIFIED, DELETED) and the object."""


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
) -> None:
    """Watch ``plural`` in ``namespace`` (``None``: the cluster) until cancelled; resumed with back-off.

    ``on_gap`` is called whenever the stream broke and events may have been
    missed; each new stream starts with an ADDED event per matching object.
    Every stream lasts ``WATCH_SECONDS``; one still open at ``WATCH_SILENCE``
    is cut and opened again, and one that ends at once with nothing counts
    as broken (back-off, no sign of life). ``health`` is told of every sign
    of life under ``name`` (what the watch is for) with the plural and
    namespace.
    """
    name = f"{name or 'watch'} {plural} {namespace or '*'}"
    bound = 2 * WATCH_SILENCE  # a failed stream is retried within 5 s: two silences mean it cannot connect
    pause = 0.05
    loop = asyncio.get_running_loop()
    if health is not None:
        health.alive(name, bound)  # from now on it must show life: one that never connects turns stale
    try:
        while True:
            opened, delivered = loop.time(), False
            try:
                watch = Watch()  # type: ignore[no-untyped-call]
                scope: list[Any] = [] if namespace is None else [namespace]
                listing = (
                    objects.list_cluster_custom_object
                    if namespace is None
                    else objects.list_namespaced_custom_object
                )
                stream = watch.stream(  # type: ignore[no-untyped-call]
                    listing,
                    GROUP,
                    VERSION,
                    *scope,
                    plural,
                    label_selector=label_selector,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=WATCH_SILENCE,  # the whole stream: the server ends it before
                )
                async with watch:
                    async for event in stream:
                        delivered = True
                        if health is not None:
                            health.alive(name, bound)
                        if event["type"] != "BOOKMARK":
                            on_event(str(event["type"]), event["object"])
                if not delivered and loop.time() - opened < WATCH_SECONDS / 2:
                    # Ended at once with nothing (a proxy cutting long requests): not a working watch.
                    raise aiohttp.ClientPayloadError("the watch stream ended at once with nothing")
                if health is not None:
                    health.alive(name, bound)  # the server ended the stream on time: the connection works
                pause = 0.05
            except TRANSIENT as error:
                logger.info("watch of %s interrupted (%s); again", plural, error)
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, 5.0)
            except Exception:  # never die silently: whoever relies on this watch would wait for nothing
                logger.exception("watch of %s failed unexpectedly; again", plural)
                await asyncio.sleep(5.0 * random.uniform(0.8, 1.2))
            on_gap()
    finally:
        if health is not None:
            health.forget(name)
