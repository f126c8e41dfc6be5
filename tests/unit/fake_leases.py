"""An in-memory Lease API for unit tests of the mutex: the server's rules, and faults on demand.

A fake, not a mock: it keeps Leases with increasing resource versions,
refuses a stale update with ``Conflict``, creates on update (as the real
API server does for Leases), serves LIST snapshots and WATCH streams from
a version (410 for one that is too old), and lets a test make the cases
the real API server cannot be made to show on cue: a stale event, a
request that hangs or answers after it was applied, a watch refused.
The integration suites run the same code on the real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lb_operator.mutex.leases import Conflict, LeaseAPIError, Missing, RequestLedger, Unavailable

if TYPE_CHECKING:
    from lb_operator.mutex import LeaseMutex
    from lb_operator.mutex.watch import LeaseWatch

Hook = Callable[[], Awaitable[None]]
MakeMutex = Callable[..., "LeaseMutex"]
"""The ``make_mutex`` fixture: ``make_mutex(identity="replica", settings=None, **LeaseMutex options)``."""


class FakeLeases:
    """Leases in one namespace. Requests are counted in ``ledger`` like ``LeaseAPI``'s."""

    def __init__(self, namespace: str = "test") -> None:
        self.namespace = namespace
        self.ledger = RequestLedger()
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 100
        self.events: list[tuple[int, dict[str, Any]]] = []  # (resource version, watch event)
        self.oldest_watchable = 0  # a watch from before this gets 410 Gone
        self.errors: dict[str, list[LeaseAPIError]] = defaultdict(list)  # verb → next failures
        self.before: dict[str, list[Hook]] = defaultdict(list)  # verb → run before applying (once each)
        self.after: dict[str, list[Hook]] = defaultdict(list)  # verb → run after applying, before answering
        self.watch_starts: list[str] = []  # the resourceVersion each watch started from
        self.watch_started_at: list[float] = []  # and when (loop time)
        self.end_streams_at_once = False  # a proxy that cuts every long request at once
        self._streams_opened = 0
        self._silent_below = 0  # streams opened before this number deliver nothing more (half-open)
        self._news = asyncio.Event()
        self._cut = asyncio.Event()

    # -- what tests use to arrange cases -----------------------------------------------------------

    def fail_next(self, verb: str, error: LeaseAPIError, times: int = 1) -> None:
        self.errors[verb].extend([error] * times)

    def inject(self, kind: str, obj: dict[str, Any]) -> None:
        """Send a watch event as given (e.g. a stale one) without changing any Lease."""
        self._record(kind, copy.deepcopy(obj))

    def stall_open_watches(self) -> None:
        """Every open watch stream stops delivering, yet stays open: a half-open connection.

        Streams opened afterwards deliver as usual (a new connection works).
        """
        self._silent_below = self._streams_opened

    def cut_watches(self) -> None:
        """End every open watch stream cleanly, as a proxy cutting long requests would."""
        self._cut.set()
        self._cut = asyncio.Event()

    def put(self, name: str, spec: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Write a Lease directly, as another replica would (no ledger entry)."""
        obj = self.objects.get(name) or {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"lboperator.dev/lock": "true"},
            },
        }
        obj = copy.deepcopy(obj)
        if key is not None:
            obj["metadata"].setdefault("annotations", {})["lboperator.dev/lock-key"] = key
        obj["spec"] = {**obj.get("spec", {}), **spec}
        return self._store("MODIFIED" if name in self.objects else "ADDED", obj)

    def remove(self, name: str) -> None:
        """Delete a Lease directly (a sweeper of another replica)."""
        obj = self.objects.pop(name)
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self._record("DELETED", obj)

    # -- the Lease calls (LeaseCalls) ---------------------------------------------------------------

    async def get(self, name: str, kind: str, budget: float | None = None) -> dict[str, Any]:
        with self.ledger.request("get", kind, name):
            await self._enter("get")
            if name not in self.objects:
                raise Missing(f"GET {name}: 404")
            found = copy.deepcopy(self.objects[name])
            await self._leave("get")
            return found

    async def create(self, body: dict[str, Any], kind: str, budget: float | None = None) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self.ledger.request("create", kind, name):
            await self._enter("create")
            if name in self.objects:
                raise Conflict(f"POST {name}: 409 already exists")
            stored = self._store("ADDED", copy.deepcopy(body))
            await self._leave("create")
            return stored

    async def replace(self, body: dict[str, Any], kind: str, budget: float | None = None) -> dict[str, Any]:
        name = body["metadata"]["name"]
        with self.ledger.request("update", kind, name):
            await self._enter("update")
            current = self.objects.get(name)
            sent = body["metadata"].get("resourceVersion")
            if current is not None and sent and sent != current["metadata"]["resourceVersion"]:
                raise Conflict(f"PUT {name}: 409 the object has been modified")
            stored = self._store("MODIFIED" if current else "ADDED", copy.deepcopy(body))
            await self._leave("update")
            return stored

    async def delete(self, name: str, resource_version: str, kind: str) -> None:
        with self.ledger.request("delete", kind, name):
            await self._enter("delete")
            current = self.objects.get(name)
            if current is None:
                raise Missing(f"DELETE {name}: 404")
            if current["metadata"]["resourceVersion"] != resource_version:
                raise Conflict(f"DELETE {name}: 409 precondition failed")
            self.remove(name)
            await self._leave("delete")

    async def list(self) -> dict[str, Any]:
        with self.ledger.request("list", "watch", None):
            await self._enter("list")
            items = [copy.deepcopy(obj) for obj in self.objects.values()]
            listing = {"metadata": {"resourceVersion": str(self.version)}, "items": items}
            await self._leave("list")
            return listing

    async def watch(self, resource_version: str, timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        self.ledger.count("watch", "watch")
        self.watch_starts.append(resource_version)
        self.watch_started_at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0)  # a real request always yields to the loop
        await self._enter("watch")
        if self.end_streams_at_once:
            return
        since = int(resource_version)
        if since < self.oldest_watchable:
            yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
            return
        cut = self._cut
        number = self._streams_opened
        self._streams_opened += 1
        position = next(
            (i for i, (version, _) in enumerate(self.events) if version > since), len(self.events)
        )
        try:
            async with asyncio.timeout(timeout_seconds):
                while True:
                    while position < len(self.events) and number >= self._silent_below:
                        position += 1
                        yield copy.deepcopy(self.events[position - 1][1])
                    if cut.is_set():
                        return
                    news = self._news
                    waits = [asyncio.ensure_future(news.wait()), asyncio.ensure_future(cut.wait())]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiting in waits:
                            waiting.cancel()
        except TimeoutError:
            return

    # -- machinery -----------------------------------------------------------------------------------

    async def _enter(self, verb: str) -> None:
        if self.before[verb]:
            await self.before[verb].pop(0)()
        if self.errors[verb]:
            raise self.errors[verb].pop(0)

    async def _leave(self, verb: str) -> None:
        if self.after[verb]:
            await self.after[verb].pop(0)()

    def _store(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        obj["metadata"].setdefault("namespace", self.namespace)
        self.objects[obj["metadata"]["name"]] = obj
        self._record(kind, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        version = int(obj["metadata"].get("resourceVersion") or self.version)
        self.events.append((version, {"type": kind, "object": obj}))
        self._news.set()
        self._news = asyncio.Event()


def unavailable(what: str = "connection refused") -> Unavailable:
    return Unavailable(what)


async def until(what: str, check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``check()`` holds, yielding to the loop; fail with ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.001)


async def drained(fake: FakeLeases, watch: LeaseWatch) -> None:
    """Wait until the watch has applied every event sent so far (a marker Lease arrives last)."""
    marker = fake.put(f"marker-{fake.version}", {"holderIdentity": None})
    await until("the watch to catch up", lambda: watch.get(marker["metadata"]["name"]) is not None)
