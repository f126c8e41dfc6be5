"""The operator's view of one custom object, fresh reads of objects, and fenced status writes.

Reconcile code works on this plain value rather than on Kopf's body, so it
can be read and tested without Kopf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.api import GROUP, VERSION
from lb_operator.api.kinds import ALL_KINDS
from lb_operator.sharding import SHARD_LABEL

_PLURALS = {kind.kind: kind.plural for kind in ALL_KINDS}


@dataclass(frozen=True)
class Resource:
    """One custom object as the handler saw it."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)
    deleting: bool = False  # metadata.deletionTimestamp is set: its delete handler owns it now
    shard: str | None = None  # the replica that owns it (its shard label), with sharding
    resource_version: str = ""  # of the read this value comes from: a status write is fenced on it

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Resource:
        metadata = body.get("metadata") or {}
        return cls(
            kind=str(body.get("kind", "")),
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            deleting=bool(metadata.get("deletionTimestamp")),
            shard=(metadata.get("labels") or {}).get(SHARD_LABEL),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )

    @property
    def ref(self) -> str:
        """``Kind namespace/name``, for messages."""
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def cloud_name(self) -> str:
        return str(self.spec.get("cloudName") or f"{self.namespace}-{self.name}")

    def reason(self, condition: str) -> str | None:
        """The reason of ``condition`` (e.g. ``Ready``) as the status has it now; ``None`` without one."""
        found = next((c for c in self.status.get("conditions") or [] if c.get("type") == condition), None)
        return str(found.get("reason")) if found else None

    def is_ready(self) -> bool:
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in self.status.get("conditions") or []
        )


class VersionConflict(Exception):
    """A write carrying a resourceVersion found the object changed since (HTTP 409)."""


class ResourceAPI:
    """Reads custom objects of this operator's group, and writes their status only if unchanged."""

    def __init__(self, api: client.ApiClient, request_timeout: float = 30.0) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._timeout = request_timeout

    async def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        """The object as the API server has it now (a consistent read); ``None`` if there is none."""
        try:
            body = await self._objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, _PLURALS[kind], name, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        assert isinstance(body, dict), f"a custom object is a JSON object, got {type(body).__name__}"
        return Resource.from_body(body)

    async def patch_status(self, obj: Resource, resource_version: str, status: Mapping[str, Any]) -> str:
        """Merge ``status`` into the object's status if it is still at ``resource_version``; return the
        resourceVersion it has now.

        ``VersionConflict`` if it changed since (anything: labels, spec, another
        status write); ``LookupError`` if it is gone.
        """
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        try:
            written = await self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                obj.namespace,
                _PLURALS[obj.kind],
                obj.name,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout,
            )
        except ApiException as error:
            if error.status == 409:
                raise VersionConflict(f"{obj.ref} changed since version {resource_version}") from None
            if error.status == 404:
                raise LookupError(f"{obj.ref} is gone") from None
            raise
        assert isinstance(written, dict), f"a custom object is a JSON object, got {type(written).__name__}"
        return str(written["metadata"]["resourceVersion"])
