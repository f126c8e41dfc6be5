"""The operator's objects as the API server keeps them, in memory: consistent reads, fenced status writes.

A fake, not a mock: every write bumps the resourceVersion, a status write
carrying an older one is refused (``VersionConflict``), and a test can move
an object behind a handler's back (relabel it, bump its generation, delete
it) at the moment it chooses — what a frozen replica finds when it resumes.
The integration suites run the same code on the real kube-apiserver.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from lb_operator.reconcile.resources import Resource, VersionConflict
from lb_operator.sharding import SHARD_LABEL

Key = tuple[str, str, str]


@dataclass
class FakeObjects:
    """Bodies by (kind, namespace, name); ``status_writes`` lists every status write that landed."""

    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    version: int = 1000
    status_writes: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    refused: int = 0
    unreachable: int = 0  # the next status writes that fail as if the API server could not be reached

    def put(self, body: Mapping[str, Any]) -> Resource:
        """Store ``body`` (a new resourceVersion) and return it as the handler would see it."""
        stored = copy.deepcopy(dict(body))
        self.version += 1
        stored.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.bodies[_key(stored)] = stored
        return Resource.from_body(stored)

    def add(self, obj: Resource, shard: str | None = None) -> Resource:
        """Store the object ``obj`` describes (labelled for ``shard``)."""
        metadata: dict[str, Any] = {
            "namespace": obj.namespace,
            "name": obj.name,
            "uid": obj.uid,
            "generation": obj.generation,
            "labels": {SHARD_LABEL: shard} if shard else {},
        }
        if obj.deleting:
            metadata["deletionTimestamp"] = "2026-12-02T00:00:00Z"
        return self.put(
            {"kind": obj.kind, "metadata": metadata, "spec": dict(obj.spec), "status": dict(obj.status)}
        )

    def change(self, obj: Resource, **metadata: Any) -> Resource:
        """Change the stored object's metadata (``labels``, ``generation``, ``deletionTimestamp``)."""
        body = copy.deepcopy(self.bodies[(obj.kind, obj.namespace, obj.name)])
        body["metadata"].update(metadata)
        return self.put(body)

    def remove(self, obj: Resource) -> None:
        del self.bodies[(obj.kind, obj.namespace, obj.name)]

    def status_of(self, obj: Resource) -> dict[str, Any]:
        return dict(self.bodies[(obj.kind, obj.namespace, obj.name)].get("status") or {})

    async def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        body = self.bodies.get((kind, namespace, name))
        return Resource.from_body(copy.deepcopy(body)) if body is not None else None

    async def patch_status(self, obj: Resource, resource_version: str, status: Mapping[str, Any]) -> str:
        if self.unreachable:
            self.unreachable -= 1
            raise aiohttp.ClientConnectionError("the API server could not be reached")
        key = (obj.kind, obj.namespace, obj.name)
        body = self.bodies.get(key)
        if body is None:
            raise LookupError(f"{obj.ref} is gone")
        if body["metadata"]["resourceVersion"] != resource_version:
            self.refused += 1
            raise VersionConflict(f"{obj.ref} changed since version {resource_version}")
        body = copy.deepcopy(body)
        body["status"] = {**(body.get("status") or {}), **copy.deepcopy(dict(status))}
        self.put(body)
        self.status_writes.append((key, dict(status)))
        return str(self.bodies[key]["metadata"]["resourceVersion"])


def _key(body: Mapping[str, Any]) -> Key:
    metadata = body["metadata"]
    return (str(body["kind"]), str(metadata["namespace"]), str(metadata["name"]))
