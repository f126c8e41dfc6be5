"""A replica letting go of the objects the sharder moves away from it (the drain protocol).

The sharder labels such an object ``drain``. From then on this replica's
handlers refuse to start on it (``refuses``), and ``Drainer`` waits until no
handler of this replica runs on it, then removes the shard and drain labels
(resourceVersion-checked): that is the acknowledgement the sharder waits for
before it gives the object to its new owner. So no object is worked on by
two replicas at once, and nothing in flight is cut short.

A handler may be asked to start with a body older than the drain label:
Kopf's retry of an attempt, say, woken by its own retry record written just
before the sharder's label. So the drainer remembers what it lets go, from
the moment it sees the drain label (``letting_go``), and a handler refuses
such an object whatever its body says, until the mirror shows the object
given back to this replica. The mirror saw the drain label before the
acknowledgement is sent, so no handler starts here after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.sharding import DRAIN_LABEL, SHARD_LABEL, metrics
from lb_operator.sharding.streams import API_TIMEOUT, TRANSIENT, Mirror

logger = logging.getLogger(__name__)


def refuses(body: Mapping[str, Any]) -> bool:
    """True when the object is being drained away: a handler must not start work on it."""
    return DRAIN_LABEL in ((body.get("metadata") or {}).get("labels") or {})


class Drainer:
    """Counts this replica's running handlers per object, and acknowledges drains once they are done.

    ``leaving(body, True)`` is called when a drained object still has a
    handler running (so a wait in it can end early), ``leaving(body, False)``
    once none runs.
    """

    def __init__(
        self,
        api: client.ApiClient,
        identity: str,
        mirror: Mirror,
        leaving: Callable[[Mapping[str, Any], bool], None] = lambda body, going: None,
    ) -> None:
        self._leaving = leaving
        self._objects = client.CustomObjectsApi(api)
        self._identity = identity
        self._mirror = mirror
        self._plurals = {kind.kind: kind.plural for kind in ALL_KINDS}
        self._running: Counter[str] = Counter()
        self._let_go: set[str] = set()  # drained away (or being drained) since the mirror said so
        self._idle: dict[str, asyncio.Event] = {}
        self._acks: dict[str, asyncio.Task[bool]] = {}

    @contextlib.contextmanager
    def working_on(self, uid: str) -> Iterator[None]:
        """Wrap each handler run: while any runs on ``uid``, its drain is not acknowledged."""
        self._running[uid] += 1
        try:
            yield
        finally:
            self._running[uid] -= 1
            if self._running[uid] <= 0:
                del self._running[uid]
                idle = self._idle.pop(uid, None)
                if idle is not None:
                    idle.set()

    def busy(self, uid: str) -> bool:
        return uid in self._running

    def letting_go(self, uid: str) -> bool:
        """Whether ``uid`` is being drained away or was let go, and not given back since (as the mirror
        tells it): no handler may start on it here, whatever the body it was handed says."""
        return uid in self._let_go

    async def run(self) -> None:
        """Let go of this replica's objects labelled drain (from the mirror's news), until cancelled."""
        unlisten = self._mirror.listen(self._seen)
        try:
            for body in self._mirror.bodies():  # labelled before we listened
                self._seen(str(body.get("kind")), "ADDED", body)
            await asyncio.Future()
        finally:
            unlisten()
            acks = list(self._acks.values())
            for task in acks:
                task.cancel()
            await asyncio.gather(*acks, return_exceptions=True)

    def _seen(self, kind: str, event: str, body: dict[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        labels = metadata.get("labels") or {}
        uid = str(metadata.get("uid"))
        ours = labels.get(SHARD_LABEL) == self._identity
        if event == "DELETED" or (ours and DRAIN_LABEL not in labels):
            self._let_go.discard(uid)  # gone, or (given back to us) ours again
            # A drain called off: its acknowledgement must not outlive it, or a drain issued again
            # would find it pending, and it would let go without waiting for handlers started here
            # in between. The next drain starts an acknowledgement of its own.
            pending = self._acks.pop(uid, None)
            if pending is not None:
                pending.cancel()
        elif event in ("ADDED", "MODIFIED") and ours and kind in self._plurals:
            self._let_go.add(uid)
            self._acknowledge_later(kind, body)

    def _acknowledge_later(self, kind: str, body: dict[str, Any]) -> None:
        uid = str(body["metadata"]["uid"])
        if uid not in self._acks:
            task = asyncio.create_task(self._acknowledge(self._plurals[kind], body), name=f"drain {uid}")
            self._acks[uid] = task
            task.add_done_callback(functools.partial(self._ended, kind, body))

    def _ended(self, kind: str, body: dict[str, Any], task: asyncio.Task[bool]) -> None:
        """An acknowledgement ended. One refused on a newer version of the object hands over to that
        version, if the mirror has it already (its event was passed over while this one ran); if not,
        the mirror's event of it starts the next one."""
        uid = str(body["metadata"]["uid"])
        if self._acks.get(uid) is task:  # not a later drain's acknowledgement, started since
            del self._acks[uid]
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.error("letting go of %s failed", uid, exc_info=task.exception())
            return
        if task.result():
            return
        current = self._mirror.body(kind, uid)
        if current is None or current["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]:
            return
        labels = current["metadata"].get("labels") or {}
        if labels.get(SHARD_LABEL) == self._identity and DRAIN_LABEL in labels:
            self._acknowledge_later(kind, current)

    async def _acknowledge(self, plural: str, body: dict[str, Any]) -> bool:
        """Let go of ``body``'s object once no handler of this replica runs on it: True once done (or
        the object is gone), False when it changed since ``body`` (409).

        Only a version the mirror has shown is acknowledged: the mirror saw its drain label first, so
        no handler starts here after the acknowledgement, and no older event of it (a call-off) can
        come after it and let one start."""
        metadata = body["metadata"]
        uid, namespace, name = metadata["uid"], metadata["namespace"], metadata["name"]
        if self.busy(uid):
            idle = self._idle.setdefault(uid, asyncio.Event())
            try:
                self._leaving(body, True)  # a handler waiting for a parent stops waiting
                await idle.wait()
            finally:
                self._leaving(body, False)
        patch = {
            "metadata": {
                "resourceVersion": metadata["resourceVersion"],
                "labels": {SHARD_LABEL: None, DRAIN_LABEL: None},
            }
        }
        while True:
            try:
                await self._objects.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    patch,
                    _content_type="application/merge-patch+json",
                    _request_timeout=API_TIMEOUT,
                )
            except ApiException as error:
                if error.status == 404:
                    return True
                if error.status == 409:
                    return False
                logger.warning("letting go of %s/%s failed (%s); again", namespace, name, error)
                await asyncio.sleep(1.0)
                continue
            except TRANSIENT as error:
                logger.info("letting go of %s/%s failed (%s); again", namespace, name, error)
                await asyncio.sleep(1.0)
                continue
            metrics.DRAINED.inc()
            logger.info("let go of %s %s/%s for its new owner", plural, namespace, name)
            return True
