"""A follower whose resourceVersion the API server no longer has (410 Gone) lists again; what it
delivers is slim (no field owners, no copy of the last applied manifest).

A stand-in objects API plays the server: a 410 needs etcd to have
compacted past the follower's version, which the real API server does
only on its own schedule. The stand-in answers LISTs from what the test
put in and serves scripted watch streams, recording where each resumed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lb_operator.sharding.streams import Following, follow_forever


def _lb(name: str, version: int) -> dict[str, Any]:
    metadata = {"name": name, "uid": f"uid-{name}", "resourceVersion": str(version)}
    return {"kind": "LoadBalancer", "metadata": metadata}


class Stream:
    """One watch response: its lines, then the end (or, with ``hold``, nothing more until cancelled)."""

    def __init__(self, events: list[dict[str, Any]], hold: bool = False) -> None:
        self._lines = [json.dumps(event).encode() + b"\n" for event in events]
        self._hold = hold
        self.content = self

    async def readline(self) -> bytes:
        if self._lines:
            return self._lines.pop(0)
        if self._hold:
            await asyncio.Event().wait()
        return b""

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class Server:
    """Answers each LIST and each watch with the next one scripted."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], int]], streams: list[Stream]) -> None:
        self.lists, self.streams = lists, streams
        self.listed = 0
        self.resumed_from: list[str] = []
        self.all_served = asyncio.Event()

    async def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            self.resumed_from.append(kwargs["resource_version"])
            stream = self.streams.pop(0)
            if not self.streams:
                self.all_served.set()
            return stream
        items, version = self.lists[self.listed]
        self.listed += 1
        return {"items": items, "metadata": {"resourceVersion": str(version)}}


async def _follow(server: Server, on_event: Any, **options: Any) -> None:
    """Follow the stand-in until it has served every scripted stream."""
    task = asyncio.create_task(
        follow_forever(server, "loadbalancers", "shop", on_event, **options)  # type: ignore[arg-type]
    )
    try:
        async with asyncio.timeout(5):
            await server.all_served.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_gone_lists_again_and_reports_what_was_deleted_meanwhile() -> None:
    expired = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
    bookmark = {"kind": "LoadBalancer", "metadata": {"resourceVersion": "12"}}
    server = Server(
        # b is deleted while the follower's version expires.
        [([_lb("a", 5), _lb("b", 6)], 10), ([_lb("a", 11)], 20)],
        [
            Stream([{"type": "MODIFIED", "object": _lb("a", 11)}, {"type": "BOOKMARK", "object": bookmark}]),
            Stream([{"type": "ERROR", "object": expired}]),
            Stream([], hold=True),
        ],
    )
    seen: list[tuple[str, str]] = []
    gaps = 0

    def gap() -> None:
        nonlocal gaps
        gaps += 1

    following = Following()
    await _follow(
        server,
        lambda kind, body: seen.append((kind, body["metadata"]["name"])),
        on_gap=gap,
        following=following,
    )

    # Resumed from the list, then from the bookmark, then from the second list.
    assert server.resumed_from == ["10", "12", "20"]
    assert server.listed == following.lists == 2
    assert gaps == 1
    assert sorted(seen[:2]) == [("ADDED", "a"), ("ADDED", "b")]
    assert seen[2:] == [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "a")]


def _heavy(name: str, version: int) -> dict[str, Any]:
    body = _lb(name, version)
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:zone": {}}}}]
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(body),
        "lboperator.dev/reconcile": "{}",  # Kopf's retry record: the nudger reads it
    }
    return body


async def test_objects_are_delivered_without_what_nobody_reads() -> None:
    server = Server(
        [([_heavy("a", 5)], 10)],
        [Stream([{"type": "MODIFIED", "object": _heavy("a", 11)}]), Stream([], hold=True)],
    )
    seen: list[dict[str, Any]] = []
    await _follow(server, lambda kind, body: seen.append(body))
    assert len(seen) == 2  # listed, then watched
    for body in seen:
        assert "managedFields" not in body["metadata"]
        assert body["metadata"]["annotations"] == {"lboperator.dev/reconcile": "{}"}
