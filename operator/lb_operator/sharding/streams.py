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

logger = logging.getLogger(__name__)

TRANSIENT = (ApiException, aiohttp.ClientError, OSError, TimeoutError)
"""Errors talking to the API server that trying again may cure (aiohttp's are not all OSErrors)."""


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
                    GROUP, VERSION, kind.plural, label_selector=label_selector
                )
            else:
                listing = await objects.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, kind.plural, label_selector=label_selector
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
) -> None:
    """Watch ``plural`` in ``namespace`` (``None``: the cluster) until cancelled; resumed with back-off.

    ``on_gap`` is called whenever the stream broke and events may have been
    missed; each new stream starts with an ADDED event per matching object.
    """
    pause = 0.05
    while True:
        try:
            watch = Watch()  # type: ignore[no-untyped-call]
            scope: list[Any] = [] if namespace is None else [namespace]
            listing = (
                objects.list_cluster_custom_object
                if namespace is None
                else objects.list_namespaced_custom_object
            )
            stream = watch.stream(  # type: ignore[no-untyped-call]
                listing, GROUP, VERSION, *scope, plural, label_selector=label_selector, timeout_seconds=300
            )
            async with watch:
                async for event in stream:
                    on_event(str(event["type"]), event["object"])
            pause = 0.05
        except TRANSIENT as error:
            logger.info("watch of %s interrupted (%s); again", plural, error)
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))
            pause = min(pause * 2, 5.0)
        on_gap()
