"""Followers (``sharding.streams.follow_forever``) against the real API server: list once, then resume.

A follower that re-listed on every stream would deliver each object again
every ``WATCH_SECONDS`` — at 10,000 objects, per follower, a full LIST a
minute. These show it lists once, resumes from the resourceVersion it saw,
and, when it must list again, reports what went away meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes.aio import client
from sharding_support import load_balancer, until

from lb_operator.api import GROUP, VERSION
from lb_operator.sharding import streams
from lb_operator.sharding.streams import Following, follow_forever
from lb_operator.testing import Cluster


@pytest.fixture
def short_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams the server ends after 1 s, so a test sees several of them."""
    monkeypatch.setattr(streams, "WATCH_SECONDS", 1)


async def test_a_follower_lists_once_and_resumes_each_stream_where_the_last_ended(
    crds: Cluster, api: client.ApiClient, namespace: str, short_streams: None
) -> None:
    objects = client.CustomObjectsApi(api)
    for name in ("a", "b"):
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "loadbalancers", load_balancer(namespace, name)
        )
    seen: list[tuple[str, str]] = []
    following = Following()
    task = asyncio.create_task(
        follow_forever(
            objects,
            "loadbalancers",
            namespace,
            lambda kind, body: seen.append((kind, body["metadata"]["name"])),
            following=following,
        )
    )
    try:
        await until("the first list", following.synced.is_set)
        await until("three streams ended and were resumed", lambda: following.streams >= 4)
        await objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "loadbalancers", "a", {"metadata": {"labels": {"x": "1"}}}
        )
        await until("the change", lambda: ("MODIFIED", "a") in seen)
        streams_then = following.streams
        await until("two more streams", lambda: following.streams >= streams_then + 2)
        await objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "loadbalancers", "b")
        await until("the deletion", lambda: ("DELETED", "b") in seen)
        streams_then = following.streams
        await until("two more streams", lambda: following.streams >= streams_then + 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert following.lists == 1
    # Each object once as it was listed, then each change once: no stream delivered them again.
    assert sorted(seen[:2]) == [("ADDED", "a"), ("ADDED", "b")]
    assert seen[2:] == [("MODIFIED", "a"), ("DELETED", "b")]


async def test_a_list_after_a_gap_reports_what_went_away_meanwhile(
    crds: Cluster, api: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    for name in ("kept", "gone"):
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "loadbalancers", load_balancer(namespace, name)
        )
    seen: list[tuple[str, str]] = []
    known: dict[str, dict[str, Any]] = {}

    def record(kind: str, body: dict[str, Any]) -> None:
        seen.append((kind, body["metadata"]["name"]))

    scope = [namespace]
    listing = objects.list_namespaced_custom_object
    await streams._relist(listing, scope, "loadbalancers", "", known, record)
    # The follower's version became too old (410): meanwhile "gone" was deleted and "new" created.
    await objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "loadbalancers", "gone")
    await objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "loadbalancers", load_balancer(namespace, "new")
    )
    seen.clear()

    await streams._relist(listing, scope, "loadbalancers", "", known, record)

    assert seen[0] == ("DELETED", "gone")
    assert sorted(seen[1:]) == [("ADDED", "kept"), ("ADDED", "new")]
    assert sorted(body["metadata"]["name"] for body in known.values()) == ["kept", "new"]


async def test_a_list_comes_in_pages(
    crds: Cluster, api: client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "LIST_PAGE", 2)
    objects = client.CustomObjectsApi(api)
    for i in range(5):
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "loadbalancers", load_balancer(namespace, f"lb{i}")
        )
    pages = 0
    listing = objects.list_namespaced_custom_object

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        pages += 1
        return await listing(*args, **kwargs)

    seen: list[str] = []
    await streams._relist(
        counted, [namespace], "loadbalancers", "", {}, lambda _, body: seen.append(body["metadata"]["name"])
    )

    assert sorted(seen) == [f"lb{i}" for i in range(5)]
    assert pages == 3
