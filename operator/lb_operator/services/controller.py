"""Services of ``type: LoadBalancer`` with this operator's class, served through the five kinds.

Each replica hears every Service, Node and EndpointSlice (Kopf ``on.event``
handlers: no finalizer of Kopf's, no stored progress) and every generated
object (the replica's ``Mirror``), and keeps the latest of each. A Service
is worked on by the replica that owns its tree: the live member its
LoadBalancer's root key hashes to, as the sharder labels the tree (with
sharding off, by every replica: the work is idempotent).

Working on a Service (``sync``), from what was heard:

- ours and wanted (``type: LoadBalancer``, not being deleted): put this
  operator's finalizer on it (``EnsuringLoadBalancer`` the first time),
  generate its objects (``translate.generate``) and apply those that
  differ from what is there (server-side apply, this operator's field
  manager, forced: an edit to a generated object is set back), delete the
  generated objects no longer wanted, and once the LoadBalancer is Ready
  write ``status.loadBalancer.ingress`` (``EnsuredLoadBalancer``; later
  changes ``UpdatedLoadBalancer``) and the condition ``LoadBalancerSynced``.
  A bad annotation: the condition ``False``, a ``SyncLoadBalancerFailed``
  Event once, and nothing applied;
- ours and no longer wanted (deleted, or its type changed): delete the
  generated objects (``DeletingLoadBalancer``), whose own finalizers empty
  the cloud; once none is left, clear the ingress and remove the finalizer
  (``DeletedLoadBalancer``).

The generated objects then go the way of any other: sharded, each change
under its tree's lock, Ready in their status. Node and endpoint changes
arrive as member objects applied together, and the tree's queue serves
them back to back under one hold of its lock.

What a sync decides, it decides on the Service read afresh (a consistent
read; one that is gone is forgotten), and only once the replica's mirror
has listed the generated objects; before the finalizer goes, what is left
is listed from the API server too. Writes to a Service are fenced on the
version read (a resourceVersion precondition): a replica that was frozen
or cut off and resumes with an old view is refused, and looks again. The
generated objects are applied only if they are this Service's (their
ownerReference), and only while the tree is still this replica's (looked
at before each apply); an apply the API server rejects (an immutable field
changed, a name another object has) is said in the condition and an Event,
not retried for ever. Not proven as a cloud write is: a replica frozen
between that look and its apply may apply the Nodes it last saw, until the
owner's next look sets them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.services import translate
from lb_operator.services.translate import FINALIZER, SERVICE_LABEL, BadService, Defaults
from lb_operator.sharding.streams import API_TIMEOUT, TRANSIENT, Mirror

logger = logging.getLogger(__name__)

Body = Mapping[str, Any]
FIELD_MANAGER = "lb-operator"
RESYNC = 60.0
"""Seconds between looks at every Service this replica owns, whatever was heard."""
RETRY = 2.0
"""Seconds before a Service whose work failed (the API server refused, a write was fenced) is looked at
again; doubled each time, at most ``RESYNC``."""
_PLURALS = {kind.kind: kind.plural for kind in ALL_KINDS}
_KINDS_CHILDREN_FIRST = ("LoadBalancerPoolMember", "LoadBalancerListener", "LoadBalancerHealthMonitor")


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _key_of(body: Body) -> str:
    metadata = body.get("metadata") or {}
    return _key(str(metadata.get("namespace")), str(metadata.get("name")))


def _applied(wanted: Body, current: Body) -> bool:
    """Whether ``current`` is as applying ``wanted`` would leave it: its label, its owner, and every spec
    field ``wanted`` sets (the API server's defaults may add others)."""
    metadata = current.get("metadata") or {}
    wanted_metadata = wanted["metadata"]
    if (metadata.get("labels") or {}).get(SERVICE_LABEL) != wanted_metadata["labels"][SERVICE_LABEL]:
        return False
    owner = wanted_metadata["ownerReferences"][0]["uid"]
    if not any(o.get("uid") == owner for o in metadata.get("ownerReferences") or []):
        return False
    spec = current.get("spec") or {}
    return all(spec.get(field) == value for field, value in (wanted.get("spec") or {}).items())


class ServiceController:
    """This replica's part of serving classed Services."""

    def __init__(
        self,
        api: client.ApiClient,
        mirror: Mirror,
        defaults: Defaults,
        owns: Callable[[str], bool],
    ) -> None:
        self._api = api
        self._core: client.CoreV1Api | None = None  # made on first use: ~0.5 CPU-s to import
        self._objects = client.CustomObjectsApi(api)
        self._mirror = mirror
        self.defaults = defaults
        self._owns = owns
        self._services: dict[str, Body] = {}
        self._nodes: dict[str, Body] = {}
        self._slices: dict[str, dict[str, Body]] = {}  # Service key → EndpointSlice name → slice
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # The generated objects by Service (key → UID → object), kept from the mirror's events: a sync
        # looks up its own, not every object of the fleet.
        self._made: dict[str, dict[str, Body]] = {}
        self._filed: dict[str, str] = {}  # UID → the key it is filed under
        for body in mirror.bodies():
            self._note(body, "ADDED")
        self._stop_listening: Callable[[], None] | None = mirror.listen(self._generated_event)

    # -- what is heard ---------------------------------------------------------------------------

    def service_event(self, event: str | None, body: Body) -> None:
        key = _key_of(body)
        finalizers = (body.get("metadata") or {}).get("finalizers") or []
        if event == "DELETED":
            self._services.pop(key, None)
        elif translate.is_ours(body, self.defaults.backend) or FINALIZER in finalizers:
            # With our finalizer but no class: its type changed, which wipes the class; its tree goes.
            self._services[key] = body
        else:
            self._services.pop(key, None)  # never ours: another class, or none
            return
        self._mark(key)

    def node_event(self, event: str | None, body: Body) -> None:
        name = str((body.get("metadata") or {}).get("name"))
        before = translate.eligible_nodes([self._nodes[name]]) if name in self._nodes else []
        if event == "DELETED":
            self._nodes.pop(name, None)
        else:
            self._nodes[name] = body
        after = translate.eligible_nodes([body]) if event != "DELETED" else []
        if before != after:  # a heartbeat changes nothing a member is made of
            for key, service in self._services.items():
                if (translate.annotation(service, translate.ANNOTATION_MEMBERS) or "nodes") == "nodes":
                    self._mark(key)

    def slice_event(self, event: str | None, body: Body) -> None:
        metadata = body.get("metadata") or {}
        service = (metadata.get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            return
        key = _key(str(metadata.get("namespace")), str(service))
        slices = self._slices.setdefault(key, {})
        if event == "DELETED":
            slices.pop(str(metadata.get("name")), None)
        else:
            slices[str(metadata.get("name"))] = body
        if key in self._services:
            self._mark(key)

    def _generated_event(self, kind: str, event: str, body: Body) -> None:
        key = self._note(body, event)
        if key is not None:
            self._mark(key)

    def _note(self, body: Body, event: str) -> str | None:
        """Keep ``body`` in the index if it was made for a Service; return that Service's key."""
        metadata = body.get("metadata") or {}
        service = (metadata.get("labels") or {}).get(SERVICE_LABEL)
        uid = str(metadata.get("uid"))
        filed = self._filed.pop(uid, None)  # a label may change: filed under one Service only
        if filed is not None:
            self._made[filed].pop(uid, None)
            if not self._made[filed]:
                del self._made[filed]
        if not service:
            return None
        key = _key(str(metadata.get("namespace")), str(service))
        if event != "DELETED":
            self._made.setdefault(key, {})[uid] = body
            self._filed[uid] = key
        return key

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        self._wake.set()

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="services")

    async def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + RESYNC
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_resync - loop.time())):
                    await self._wake.wait()
            self._wake.clear()
            if loop.time() >= next_resync:
                self._dirty.update(self._services)
                next_resync = loop.time() + RESYNC
            keys, self._dirty = self._dirty, set()
            for key in sorted(keys):
                await self._sync_one(key)

    async def _sync_one(self, key: str) -> None:
        try:
            await self.sync(key)
        except Gone:
            self._services.pop(key, None)  # no DELETED may come for it (a relist tells nothing of it)
            self._failures.pop(key, None)
        except (*TRANSIENT, Stale, NotYet) as error:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(RETRY * 2 ** (failures - 1), RESYNC)
            logger.info("Service %s: %s; looking again in %.0fs", key, error, delay)
            asyncio.get_running_loop().call_later(delay, self._mark, key)
        except Exception:
            logger.exception("Service %s: unexpected failure; looking again at the next resync", key)
        else:
            self._failures.pop(key, None)

    # -- the work --------------------------------------------------------------------------------

    def generated(self, namespace: str, name: str, uid: str | None = None) -> list[Body]:
        """The objects generated for the Service ``namespace/name`` (of ``uid``: owned by it), as last
        heard."""
        made = self._made.get(_key(namespace, name), {}).values()
        # Labelled so, but not made for this Service (no ownerReference to ``uid``): never touched.
        return [body for body in made if uid is None or _owned_by(body, uid)]

    async def sync(self, key: str) -> None:
        """Make the Service ``key``'s generated objects and status what it asks for (see the module)."""
        heard = self._services.get(key)
        if heard is None:
            return
        namespace, name = key.split("/", 1)
        if not self._owns(_key(namespace, translate.load_balancer_name(heard))):
            return
        if not self._mirror.synced():  # what is there is not known yet: neither make nor delete
            raise NotYet("this replica has not listed the generated objects yet")
        service = await self._read(namespace, name)  # the decisions are taken on the Service as it is now
        uid = str(service["metadata"]["uid"])
        finalizers = service["metadata"].get("finalizers") or []
        if not (translate.wants_load_balancer(service) and translate.is_ours(service, self.defaults.backend)):
            await self._tear_down(service, namespace, name, finalizers)
            return
        try:
            wanted = translate.generate(
                service,
                self.defaults,
                nodes=list(self._nodes.values()),
                slices=list(self._slices.get(key, {}).values()),
            )
        except BadService as error:  # nothing applied; said once, in a condition and an Event
            await self._failed(service, str(error))
            return
        if FINALIZER not in finalizers:
            service = await self._add_finalizer(service)
            self._event(service, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer")
        named = {(b.get("kind"), b["metadata"]["name"]): b for b in self.generated(namespace, name)}
        current = {k: b for k, b in named.items() if _owned_by(b, uid)}
        changed, refused = 0, []
        for manifest in wanted:
            kind, object_name = manifest["kind"], manifest["metadata"]["name"]
            have = current.pop((kind, object_name), None)
            if have is None and (kind, object_name) in named:
                refused.append(f"{kind} {object_name} exists and is not this Service's; rename one of them")
                continue
            if have is not None and (_applied(manifest, have) or "deletionTimestamp" in have["metadata"]):
                continue  # as wanted, or on its way out (made again once it is gone)
            if not self._owns(_key(namespace, translate.load_balancer_name(service))):
                return  # the tree moved to another replica meanwhile: it goes on from there
            try:
                await self._apply(manifest)
            except ApiException as error:
                if error.status not in (400, 403, 422):
                    raise
                refused.append(f"{kind} {object_name}: {_reason(error)}")
                continue
            changed += 1
        for (kind, object_name), body in sorted(current.items(), key=lambda item: _order(str(item[0][0]))):
            if "deletionTimestamp" not in body["metadata"]:
                await self._delete(str(kind), namespace, object_name)
                changed += 1
        if refused:  # what could be applied was; the rest is said, with what to do
            await self._failed(service, "; ".join(refused))
            return
        load_balancer = next(
            (b for b in self.generated(namespace, name, uid) if b.get("kind") == "LoadBalancer"), None
        )
        ingress = translate.ingress(load_balancer)
        status = (service.get("status") or {}).get("loadBalancer") or {}
        had = status.get("ingress") or []
        new_ingress = bool(ingress) and [i["ip"] for i in ingress] != [i.get("ip") for i in had]  # +ipMode
        written: dict[str, Any] = {"loadBalancer": {"ingress": ingress}} if new_ingress else {}
        conditions = _conditions(
            service, True, "Synced", "the Service's load-balancer objects are as it asks"
        )
        if conditions is not None:
            written["conditions"] = conditions
        if written:
            await self._patch_service(service, {"status": written}, status=True)
        if new_ingress:
            if had:
                self._event(service, "Normal", "UpdatedLoadBalancer", "Updated load balancer with new hosts")
            else:
                self._event(service, "Normal", "EnsuredLoadBalancer", "Ensured load balancer")
        elif changed and had:
            self._event(service, "Normal", "UpdatedLoadBalancer", "Updated load balancer with new hosts")

    async def _failed(self, service: Body, message: str) -> None:
        """Say once, in the condition and a Warning Event, why the Service is not served as it asks."""
        conditions = _conditions(service, False, "SyncLoadBalancerFailed", message)
        if conditions is not None:
            await self._patch_service(service, {"status": {"conditions": conditions}}, status=True)
            self._event(
                service, "Warning", "SyncLoadBalancerFailed", f"Error syncing load balancer: {message}"
            )

    async def _tear_down(self, service: Body, namespace: str, name: str, finalizers: list[str]) -> None:
        """One step a sync: delete what is left, then clear the ingress (a Service that stays, of another
        type now), then remove the finalizer. Each write's own event brings the next step. What is left
        is read from the API (a consistent LIST) before the finalizer goes, not only from the mirror."""
        uid = str(service["metadata"]["uid"])
        left = self.generated(namespace, name, uid) or await self._list_generated(namespace, name, uid)
        if left:
            if not any("deletionTimestamp" in b["metadata"] for b in left):
                self._event(service, "Normal", "DeletingLoadBalancer", "Deleting load balancer")
            for body in sorted(left, key=lambda b: _order(str(b.get("kind")))):
                if "deletionTimestamp" not in body["metadata"]:
                    await self._delete(str(body.get("kind")), namespace, body["metadata"]["name"])
            return  # each one's deletion empties the cloud; their events bring this back
        deleting = "deletionTimestamp" in service["metadata"]
        if not deleting and ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            await self._write_ingress(service, [])
            return
        if FINALIZER in finalizers:
            await self._remove_finalizer(service)
            self._event(service, "Normal", "DeletedLoadBalancer", "Deleted load balancer")

    # -- requests --------------------------------------------------------------------------------

    async def _apply(self, manifest: Mapping[str, Any]) -> None:
        metadata = manifest["metadata"]
        await self._objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            metadata["namespace"],
            _PLURALS[manifest["kind"]],
            metadata["name"],
            dict(manifest),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            _request_timeout=API_TIMEOUT,
        )

    async def _delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self._objects.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, _PLURALS[kind], name, _request_timeout=API_TIMEOUT
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def _core_api(self) -> client.CoreV1Api:
        """The client of Services, made when first needed: a replica that never serves a Service never
        imports it (about half a CPU-second at start)."""
        if self._core is None:
            self._core = client.CoreV1Api(self._api)
        return self._core

    async def _read(self, namespace: str, name: str) -> dict[str, Any]:
        """The Service as it is now (a consistent read); ``Gone`` if there is none."""
        try:
            found = await self._core_api().read_namespaced_service(
                name, namespace, _request_timeout=API_TIMEOUT
            )
        except ApiException as error:
            if error.status == 404:
                raise Gone(f"{namespace}/{name}") from None
            raise
        return _as_dict(self._api, found)

    async def _list_generated(self, namespace: str, name: str, uid: str) -> list[Body]:
        """The objects made for the Service ``uid``, read from the API (consistent LISTs, by label)."""
        found: list[Body] = []
        for kind in ALL_KINDS:
            listed = await self._objects.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                kind.plural,
                label_selector=f"{SERVICE_LABEL}={name}",
                _request_timeout=API_TIMEOUT,
            )
            assert isinstance(listed, dict), "a list of custom objects is a JSON object"
            for item in listed.get("items", []):
                item.setdefault("kind", kind.kind)
                if _owned_by(item, uid):
                    found.append(item)
        return found

    async def _patch_service(
        self, service: Body, patch: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        """A merge patch fenced on the version read: ``Stale`` if the Service changed since, ``Gone`` if
        it went; returns the Service as written."""
        metadata = service["metadata"]
        patch = {
            **patch,
            "metadata": {**patch.get("metadata", {}), "resourceVersion": metadata["resourceVersion"]},
        }
        core = self._core_api()
        write = core.patch_namespaced_service_status if status else core.patch_namespaced_service
        try:
            written = await write(
                metadata["name"],
                metadata["namespace"],
                patch,
                _content_type="application/merge-patch+json",
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                raise Gone(f"{metadata['namespace']}/{metadata['name']}") from None
            if error.status == 409:
                raise Stale(f"the Service changed since version {metadata['resourceVersion']}") from None
            raise
        return _as_dict(self._api, written)

    async def _add_finalizer(self, service: Body) -> dict[str, Any]:
        finalizers = list((service.get("metadata") or {}).get("finalizers") or [])
        return await self._patch_service(service, {"metadata": {"finalizers": [*finalizers, FINALIZER]}})

    async def _remove_finalizer(self, service: Body) -> None:
        finalizers = [f for f in (service.get("metadata") or {}).get("finalizers") or [] if f != FINALIZER]
        await self._patch_service(service, {"metadata": {"finalizers": finalizers}})

    async def _write_ingress(self, service: Body, ingress: list[dict[str, str]]) -> None:
        await self._patch_service(service, {"status": {"loadBalancer": {"ingress": ingress}}}, status=True)

    def _event(self, service: Body, type_: str, reason: str, message: str) -> None:
        metadata = service["metadata"]
        reference = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
        }
        kopf.event(reference, type=type_, reason=reason, message=message)  # type: ignore[arg-type]


class Stale(Exception):
    """A write to a Service was refused: it changed since this replica read it."""


class Gone(Exception):
    """The Service is gone (a relist after a 410 tells nothing of what went meanwhile): forget it."""


class NotYet(Exception):
    """This replica cannot tell yet what is there (its mirror has not listed): look again soon."""


def _owned_by(body: Body, uid: str) -> bool:
    return any(o.get("uid") == uid for o in (body.get("metadata") or {}).get("ownerReferences") or [])


def _reason(error: ApiException) -> str:
    """The API server's message for a refused write (its Status body), else its reason."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return str(message or error.reason or error.status)


def _as_dict(api: client.ApiClient, found: Any) -> dict[str, Any]:
    """A core object as the API server's JSON (the client returns models; the code here reads dicts)."""
    if isinstance(found, dict):
        return found
    body: dict[str, Any] = api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
    return body


CONDITION = "LoadBalancerSynced"
"""The Service's condition this operator keeps: whether its objects are as it asks, or why not."""


def _conditions(service: Body, ok: bool, reason: str, message: str) -> list[dict[str, Any]] | None:
    """The Service's conditions with ours set so; ``None`` if it is so already (nothing to write)."""
    current = list((service.get("status") or {}).get("conditions") or [])
    ours = next((c for c in current if c.get("type") == CONDITION), None)
    status = "True" if ok else "False"
    if ours is not None and (ours.get("status"), ours.get("reason"), ours.get("message")) == (
        status,
        reason,
        message,
    ):
        return None
    changed = ours is None or ours.get("status") != status
    condition = {
        "type": CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": (service.get("metadata") or {}).get("generation", 0),
        "lastTransitionTime": _now() if changed else ours["lastTransitionTime"],  # type: ignore[index]
    }
    return [c for c in current if c.get("type") != CONDITION] + [condition]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _order(kind: str) -> int:
    """Deletion order: a pool's children, then pools, then the load balancer."""
    if kind in _KINDS_CHILDREN_FIRST:
        return 0
    return 1 if kind == "LoadBalancerPool" else 2
