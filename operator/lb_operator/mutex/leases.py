"""The few Lease API calls the mutex makes, as plain JSON, counted and bounded in time.

Why not the generated ``CoordinationV1Api`` methods: they convert every
object into validated models and back, which the mutex does not need, and
they would spread request counting, timeouts and error mapping over every
call site. Here each request goes through one method that sets its timeout,
counts it for the metrics (and for the tests that check how many requests
the lock costs), and maps failures onto three cases the algorithm cares
about: ``Conflict`` (someone else wrote first), ``Missing`` and
``Unavailable`` (retry until the deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import aiohttp
from kubernetes.aio import client

from lb_operator.mutex import metrics
from lb_operator.mutex.records import LOCK_LABEL


class LeaseAPIError(Exception):
    """Base of the request outcomes below; never leaves the mutex package."""


class Conflict(LeaseAPIError):
    """409: the object changed since we read it, or already exists."""


class Missing(LeaseAPIError):
    """404: no such Lease."""


class Unavailable(LeaseAPIError):
    """The API server could not be reached, timed out, or failed (5xx, 429, or another error)."""


class RequestLedger:
    """Requests made, per verb, and how many were ever in flight at once on one Lease.

    Only Leases with a request in flight have an entry: memory stays flat
    however many keys a process ever locks.
    """

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.max_in_flight = 0  # on any one Lease; the local queue keeps it at 1
        self._in_flight: Counter[str] = Counter()

    def count(self, verb: str, kind: str) -> None:
        self.requests[verb] += 1
        metrics.API_REQUESTS.labels(kind=kind, verb=verb).inc()

    @contextlib.contextmanager
    def request(self, verb: str, kind: str, lease: str | None) -> Iterator[None]:
        """Count one request; while it runs, it is in flight on ``lease``."""
        self.count(verb, kind)
        if lease is None:
            yield
            return
        self._in_flight[lease] += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight[lease])
        try:
            yield
        finally:
            self._in_flight[lease] -= 1
            if self._in_flight[lease] <= 0:
                del self._in_flight[lease]

    def leases_in_flight(self) -> int:
        """How many Leases have a request in flight now (and so an entry here)."""
        return len(self._in_flight)


class LeaseCalls(Protocol):
    """The Lease calls the mutex makes; ``LeaseAPI`` on a real server, a fake in unit tests.

    Every call raises only ``Conflict``, ``Missing`` or ``Unavailable`` (or is cancelled).
    """

    namespace: str
    ledger: RequestLedger

    async def get(self, name: str, kind: str, budget: float | None = None) -> dict[str, Any]: ...

    async def create(
        self, body: dict[str, Any], kind: str, budget: float | None = None
    ) -> dict[str, Any]: ...

    async def replace(
        self, body: dict[str, Any], kind: str, budget: float | None = None
    ) -> dict[str, Any]: ...

    async def delete(self, name: str, resource_version: str, kind: str) -> None: ...

    async def list(self) -> dict[str, Any]: ...

    def watch(self, resource_version: str, timeout_seconds: int) -> AsyncIterator[dict[str, Any]]: ...


class LeaseAPI:
    """Lease calls in one namespace, counted in a ``RequestLedger``."""

    def __init__(self, api_client: client.ApiClient, namespace: str, request_timeout: float) -> None:
        self._api = api_client
        self.namespace = namespace
        self._request_timeout = request_timeout
        self.ledger = RequestLedger()

    def _path(self, name: str | None = None) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        return f"{base}/{name}" if name else base

    async def _request(
        self,
        verb: str,
        kind: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: list[tuple[str, str]] | None = None,
        budget: float | None = None,
        lease: str | None = None,
    ) -> dict[str, Any]:
        seconds = self._request_timeout if budget is None else max(0.001, min(budget, self._request_timeout))
        with self.ledger.request(verb, kind, lease):
            try:
                params = await self._api.param_serialize(
                    method,
                    path,
                    query_params=query or [],
                    header_params={"Accept": "application/json", "Content-Type": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                )
                response = await self._api.call_api(
                    *params, _request_timeout=aiohttp.ClientTimeout(total=seconds)
                )
                data: bytes = await response.read()  # type: ignore[no-untyped-call]
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                raise Unavailable(f"{method} {path}: {type(error).__name__}: {error}") from error
        status = int(response.status)
        if status == 409:
            raise Conflict(f"{method} {path}: 409 {_message(data)}")
        if status == 404:
            raise Missing(f"{method} {path}: 404 {_message(data)}")
        if status >= 300:
            raise Unavailable(f"{method} {path}: {status} {_message(data)}")
        parsed: dict[str, Any] = json.loads(data) if data else {}
        return parsed

    async def get(self, name: str, kind: str, budget: float | None = None) -> dict[str, Any]:
        return await self._request("get", kind, "GET", self._path(name), budget=budget, lease=name)

    async def create(self, body: dict[str, Any], kind: str, budget: float | None = None) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return await self._request("create", kind, "POST", self._path(), body=body, budget=budget, lease=name)

    async def replace(self, body: dict[str, Any], kind: str, budget: float | None = None) -> dict[str, Any]:
        """PUT carrying ``metadata.resourceVersion``: 409 unless nobody wrote since we read."""
        name = body["metadata"]["name"]
        path = self._path(name)
        return await self._request("update", kind, "PUT", path, body=body, budget=budget, lease=name)

    async def delete(self, name: str, resource_version: str, kind: str) -> None:
        """Delete only if unchanged since we read it (a precondition, not a race)."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"resourceVersion": resource_version},
        }
        await self._request("delete", kind, "DELETE", self._path(name), body=body, lease=name)

    async def list(self) -> dict[str, Any]:
        query = [("labelSelector", LOCK_LABEL)]
        return await self._request("list", "watch", "GET", self._path(), query=query)

    async def watch(self, resource_version: str, timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        """Events of lock Leases after ``resource_version`` until the server ends the stream."""
        self.ledger.count("watch", "watch")
        query = [
            ("labelSelector", LOCK_LABEL),
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        params = await self._api.param_serialize(
            "GET",
            self._path(),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        # No total timeout: the server ends the stream after timeout_seconds; the
        # read timeout catches a connection that died without a FIN.
        stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=self._request_timeout, sock_read=timeout_seconds + self._request_timeout
        )
        try:
            response = await self._api.call_api(*params, _request_timeout=stream_timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise Unavailable(f"watch: {type(error).__name__}: {error}") from error
        raw = response.response
        try:
            if int(response.status) != 200:
                body: bytes = await response.read()  # type: ignore[no-untyped-call]
                raise Unavailable(f"watch: {response.status} {_message(body)}")
            while True:
                try:
                    line = await raw.content.readline()
                except (aiohttp.ClientError, TimeoutError, OSError) as error:
                    raise Unavailable(f"watch: {type(error).__name__}: {error}") from error
                if not line:
                    return
                try:
                    event = json.loads(line)
                except ValueError as error:  # a stream cut mid-line
                    raise Unavailable(f"watch: unreadable event: {error}") from error
                yield event
        finally:
            raw.release()
            await asyncio.sleep(0)  # let aiohttp close the connection before the caller reconnects


def _message(data: bytes) -> str:
    """The ``message`` of a Kubernetes Status body, else the first bytes of the body."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace")
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return data[:200].decode(errors="replace")
