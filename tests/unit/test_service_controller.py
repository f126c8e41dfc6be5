"""The Service controller's decisions, against a scripted API: what it writes, in which order, and when not.

A fake API because the cases are about which requests are sent (and which
are not) for a given view; the real API server runs these paths in
``tests/integration/operator/test_services.py``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.services import controller as controller_module
from lb_operator.services import translate
from lb_operator.services.controller import CONDITION, ServiceController, Stale
from lb_operator.services.translate import FINALIZER, Defaults
from lb_operator.sharding.streams import Mirror

SUBNET = "11111111-2222-3333-4444-555555555555"
DEFAULTS = Defaults(backend="cloudscale", member_subnet=SUBNET, zone="lpg1")


class FakeAPI:
    """The API server's Service (``service``) and its writes, recorded; ``refuse`` answers the Service's
    writes 409 (it changed meanwhile), ``reject`` answers applies 422, ``listed`` is what a LIST by label
    returns."""

    def __init__(self) -> None:
        self.service: dict[str, Any] | None = None
        self.calls: list[tuple[str, ...]] = []
        self.bodies: list[dict[str, Any]] = []
        self.refuse = False
        self.reject = False
        self.listed: list[dict[str, Any]] = []

    async def read_namespaced_service(self, name: str, namespace: str, **_: Any) -> dict[str, Any]:
        if self.service is None:
            raise ApiException(status=404)
        return copy.deepcopy(self.service)

    async def patch_namespaced_service(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        return await self._service("patch", body)

    async def patch_namespaced_service_status(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        return await self._service("status", body)

    async def _service(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.service is not None
        self.calls.append((what, self.service["metadata"]["name"]))
        self.bodies.append(body)
        if self.refuse or body["metadata"]["resourceVersion"] != self.service["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        if "finalizers" in body["metadata"]:
            self.service["metadata"]["finalizers"] = body["metadata"]["finalizers"]
        if "status" in body:
            self.service.setdefault("status", {}).update(body["status"])
        self.service["metadata"]["resourceVersion"] = str(
            int(self.service["metadata"]["resourceVersion"]) + 1
        )
        return copy.deepcopy(self.service)

    async def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict[str, Any], **_: Any
    ) -> None:
        self.calls.append(("apply", plural, name))
        if self.reject:
            raise ApiException(status=422, reason="Unprocessable Entity")

    async def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> None:
        self.calls.append(("delete", plural, name))

    async def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, **_: Any
    ) -> dict[str, Any]:
        return {"items": [copy.deepcopy(o) for o in self.listed if o["kind"].lower() + "s" == plural]}


class Controller(ServiceController):
    def __init__(self, api: client.ApiClient, mirror: Mirror, owns: bool = True) -> None:
        super().__init__(api, mirror, DEFAULTS, lambda _: owns)
        self.fake = FakeAPI()
        self._core = self.fake  # type: ignore[assignment]
        self._objects = self.fake  # type: ignore[assignment]
        self.events: list[str] = []

    def _event(self, service: Any, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)

    def hear(self, service: dict[str, Any]) -> None:
        """The Service as the API server has it, and as this replica heard of it."""
        self.fake.service = copy.deepcopy(service)
        self.service_event("ADDED", service)


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    made = client.ApiClient()
    yield made
    await made.close()


def _mirror(synced: bool = True) -> Mirror:
    """A replica's view of the five kinds, filled by the test (``_deliver``); listed once, or not yet."""
    mirror = Mirror(None, [])
    for following in mirror.following:
        if synced:
            following.synced.set()
    return mirror


def _service(annotations: dict[str, str] | None = None, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "7",
            "generation": 1,
            "annotations": annotations or {},
            **metadata,
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "lboperator.dev/cloudscale",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080}],
        },
    }


def _node(name: str, address: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": address}],
        },
    }


def _made(mirror: Mirror, service: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
    """The objects the Service stands for, as the mirror would show them once applied."""
    for n, body in enumerate(translate.generate(service, DEFAULTS, nodes=nodes)):
        body["metadata"]["uid"] = f"g-{n}"
        mirror._deliver(body["kind"], "ADDED", body)


async def test_a_bad_annotation_is_said_once_and_nothing_is_made(api: client.ApiClient) -> None:
    controller = Controller(api, _mirror())
    controller.hear(_service({translate.ANNOTATION_MEMBER_SUBNET: "not-a-uuid"}, finalizers=[FINALIZER]))
    await controller.sync("shop/web")
    assert controller.fake.calls == [("status", "web")]
    (condition,) = controller.fake.bodies[0]["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        CONDITION,
        "False",
        "SyncLoadBalancerFailed",
    )
    assert controller.fake.bodies[0]["metadata"]["resourceVersion"] == "7"  # fenced on the version read
    assert controller.events == ["SyncLoadBalancerFailed"]

    await controller.sync("shop/web")  # the Service now says so: nothing more to write or post
    assert controller.fake.calls == [("status", "web")]
    assert controller.events == ["SyncLoadBalancerFailed"]


async def test_a_service_whose_tree_another_replica_owns_gets_no_request(api: client.ApiClient) -> None:
    controller = Controller(api, _mirror(), owns=False)
    controller.hear(_service())
    controller.node_event("ADDED", _node("a", "10.0.0.1"))
    await controller.sync("shop/web")
    assert controller.fake.calls == []


async def test_a_new_service_gets_its_finalizer_its_objects_and_its_condition_in_one_look(
    api: client.ApiClient,
) -> None:
    controller = Controller(api, _mirror())
    controller.hear(_service())
    controller.node_event("ADDED", _node("a", "10.0.0.1"))
    await controller.sync("shop/web")
    calls = controller.fake.calls
    assert calls[0] == ("patch", "web")  # the finalizer first
    assert [c[0] for c in calls[1:-1]] == ["apply"] * 5  # LB, pool, listener, monitor, member
    assert calls[-1] == ("status", "web")  # fenced on the version the finalizer's write returned
    assert controller.events == ["EnsuringLoadBalancer"]


async def test_only_what_differs_is_applied_and_a_gone_nodes_member_is_deleted(api: client.ApiClient) -> None:
    mirror = _mirror()
    controller = Controller(api, mirror)
    service = _service(finalizers=[FINALIZER])
    synced = "the Service's load-balancer objects are as it asks"
    service["status"] = {
        "conditions": [{"type": CONDITION, "status": "True", "reason": "Synced", "message": synced}]
    }
    nodes = [_node("a", "10.0.0.1"), _node("b", "10.0.0.2")]
    _made(mirror, service, nodes)
    controller.hear(service)
    for node in nodes:
        controller.node_event("ADDED", node)
    await controller.sync("shop/web")
    assert controller.fake.calls == []  # all there as wanted: no request at all

    controller.node_event("DELETED", nodes[1])
    await controller.sync("shop/web")
    (call,) = controller.fake.calls
    assert call[:2] == ("delete", "loadbalancerpoolmembers")


async def test_a_name_another_object_has_is_not_taken_over(api: client.ApiClient) -> None:
    mirror = _mirror()
    controller = Controller(api, mirror)
    theirs = {
        "kind": "LoadBalancer",
        "metadata": {
            "name": "svc-web",
            "namespace": "shop",
            "uid": "x",
            "labels": {translate.SERVICE_LABEL: "web"},
        },
        "spec": {"zone": "lpg1"},
    }
    mirror._deliver(
        "LoadBalancer", "ADDED", theirs
    )  # labelled as ours, but no ownerReference to this Service
    controller.hear(_service(finalizers=[FINALIZER]))
    await controller.sync("shop/web")
    assert ("apply", "loadbalancers", "svc-web") not in controller.fake.calls
    assert ("delete", "loadbalancers", "svc-web") not in controller.fake.calls
    condition = controller.fake.service["status"]["conditions"][-1]  # type: ignore[index]
    assert condition["status"] == "False"
    assert "is not this Service's" in condition["message"]


async def test_an_apply_the_api_server_rejects_is_said_not_retried_for_ever(api: client.ApiClient) -> None:
    controller = Controller(api, _mirror())
    controller.hear(_service(finalizers=[FINALIZER]))
    controller.fake.reject = True  # e.g. an annotation changed a field the CRD keeps immutable
    await controller.sync("shop/web")  # no exception: nothing to retry until something changes
    condition = controller.fake.service["status"]["conditions"][-1]  # type: ignore[index]
    assert (condition["status"], condition["reason"]) == ("False", "SyncLoadBalancerFailed")
    assert "Unprocessable Entity" in condition["message"]
    assert controller.events == ["SyncLoadBalancerFailed"]


async def test_a_deleted_service_loses_its_tree_children_first_then_its_finalizer(
    api: client.ApiClient,
) -> None:
    mirror = _mirror()
    controller = Controller(api, mirror)
    service = _service(finalizers=[FINALIZER, "example.com/keep"], deletionTimestamp="2026-12-08T00:00:00Z")
    _made(mirror, _service(), [_node("a", "10.0.0.1")])
    controller.hear(service)
    await controller.sync("shop/web")
    kinds = [call[1] for call in controller.fake.calls]
    assert [call[0] for call in controller.fake.calls] == ["delete"] * 5
    assert kinds[-2:] == ["loadbalancerpools", "loadbalancers"]  # the pool's children before the pool
    assert controller.events == ["DeletingLoadBalancer"]

    left = mirror.bodies()
    for body in left:  # gone from the mirror; a LIST still finds one (the mirror lags): not yet
        mirror._deliver(str(body["kind"]), "DELETED", body)
    controller.fake.listed = [dict(left[0])]
    controller.fake.calls.clear()
    await controller.sync("shop/web")
    assert controller.fake.calls == [("delete", _plural(left[0]), left[0]["metadata"]["name"])]

    controller.fake.listed = []  # their finalizers emptied the cloud; they are gone
    controller.fake.calls.clear()
    await controller.sync("shop/web")
    assert controller.fake.calls == [("patch", "web")]
    assert controller.fake.bodies[-1]["metadata"]["finalizers"] == ["example.com/keep"]
    assert controller.events == ["DeletingLoadBalancer", "DeletingLoadBalancer", "DeletedLoadBalancer"]


async def test_a_refused_write_is_looked_at_again_and_a_gone_service_is_forgotten(
    api: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller_module, "RETRY", 0.01)
    controller = Controller(api, _mirror())
    controller.hear(_service())  # no finalizer yet: the first write adds it
    controller.fake.refuse = True
    with pytest.raises(Stale):
        await controller.sync("shop/web")
    assert controller.fake.calls == [("patch", "web")]  # and nothing applied after the refusal

    await controller._sync_one("shop/web")  # the loop's way: looked at again soon
    deadline = asyncio.get_running_loop().time() + 5
    while "shop/web" not in controller._dirty:
        assert asyncio.get_running_loop().time() < deadline, "not marked to be looked at again"
        await asyncio.sleep(0.01)

    controller.fake.service = None  # deleted; a relist would never say so
    await controller._sync_one("shop/web")
    assert "shop/web" not in controller._services


async def test_nothing_is_made_or_deleted_before_the_mirror_has_listed(api: client.ApiClient) -> None:
    # A replica that just started does not know yet what is there: a Service whose type changed must not
    # lose its finalizer (its tree would be left behind), and nothing must be made twice.
    controller = Controller(api, _mirror(synced=False))
    service = _service(finalizers=[FINALIZER])
    service["spec"]["type"] = "ClusterIP"
    controller.hear(service)
    with pytest.raises(controller_module.NotYet):
        await controller.sync("shop/web")
    assert controller.fake.calls == []


def _plural(body: Any) -> str:
    return str(body["kind"]).lower() + "s"
