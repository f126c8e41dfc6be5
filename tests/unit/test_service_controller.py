"""The Service controller's decisions, against a scripted API: what it writes, in which order, and when not.

A fake API because the cases are about which requests are sent (and which
are not) for a given view; the real API server runs these paths in
``tests/integration/operator/test_services.py``.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.services import translate
from lb_operator.services.controller import CONDITION, ServiceController, Stale
from lb_operator.services.translate import FINALIZER, Defaults
from lb_operator.sharding.streams import Mirror

SUBNET = "11111111-2222-3333-4444-555555555555"
DEFAULTS = Defaults(backend="cloudscale", member_subnet=SUBNET, zone="lpg1")


class FakeAPI:
    """Records every request; ``refuse`` answers the Service's writes 409 (it changed meanwhile)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.bodies: list[dict[str, Any]] = []
        self.refuse = False

    async def patch_namespaced_service(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> None:
        await self._service("patch", name, body)

    async def patch_namespaced_service_status(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> None:
        await self._service("status", name, body)

    async def _service(self, what: str, name: str, body: dict[str, Any]) -> None:
        self.calls.append((what, name))
        self.bodies.append(body)
        if self.refuse:
            raise ApiException(status=409)

    async def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict[str, Any], **_: Any
    ) -> None:
        self.calls.append(("apply", plural, name))

    async def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> None:
        self.calls.append(("delete", plural, name))


class Controller(ServiceController):
    def __init__(self, api: client.ApiClient, mirror: Mirror, owns: bool = True) -> None:
        super().__init__(api, mirror, DEFAULTS, lambda _: owns)
        self.fake = FakeAPI()
        self._core = self.fake  # type: ignore[assignment]
        self._objects = self.fake  # type: ignore[assignment]
        self.events: list[str] = []

    def _event(self, service: Any, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    made = client.ApiClient()
    yield made
    await made.close()


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
    controller = Controller(api, Mirror(None, []))
    service = _service({translate.ANNOTATION_MEMBER_SUBNET: "not-a-uuid"}, finalizers=[FINALIZER])
    controller.service_event("ADDED", service)
    await controller.sync("shop/web")
    assert controller.fake.calls == [("status", "web")]
    (condition,) = controller.fake.bodies[0]["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        CONDITION,
        "False",
        "SyncLoadBalancerFailed",
    )
    assert controller.fake.bodies[0]["metadata"]["resourceVersion"] == "7"  # fenced on the version heard
    assert controller.events == ["SyncLoadBalancerFailed"]

    said = copy.deepcopy(service)  # the Service as the status write left it: nothing more to say
    said["status"] = {"conditions": [condition]}
    controller.service_event("MODIFIED", said)
    await controller.sync("shop/web")
    assert controller.fake.calls == [("status", "web")]
    assert controller.events == ["SyncLoadBalancerFailed"]


async def test_a_service_whose_tree_another_replica_owns_gets_no_request(api: client.ApiClient) -> None:
    controller = Controller(api, Mirror(None, []), owns=False)
    controller.service_event("ADDED", _service())
    controller.node_event("ADDED", _node("a", "10.0.0.1"))
    await controller.sync("shop/web")
    assert controller.fake.calls == []


async def test_only_what_differs_is_applied_and_a_gone_nodes_member_is_deleted(api: client.ApiClient) -> None:
    mirror = Mirror(None, [])
    controller = Controller(api, mirror)
    service = _service(finalizers=[FINALIZER])
    service["status"] = {
        "conditions": [
            {
                "type": CONDITION,
                "status": "True",
                "reason": "Synced",
                "message": "the Service's load-balancer objects are as it asks",
            }
        ]
    }
    nodes = [_node("a", "10.0.0.1"), _node("b", "10.0.0.2")]
    _made(mirror, service, nodes)
    controller.service_event("ADDED", service)
    for node in nodes:
        controller.node_event("ADDED", node)
    await controller.sync("shop/web")
    assert controller.fake.calls == []  # all there as wanted: no request at all

    controller.node_event("DELETED", nodes[1])
    await controller.sync("shop/web")
    (call,) = controller.fake.calls
    assert call[:2] == ("delete", "loadbalancerpoolmembers")


async def test_a_deleted_service_loses_its_tree_children_first_then_its_finalizer(
    api: client.ApiClient,
) -> None:
    mirror = Mirror(None, [])
    controller = Controller(api, mirror)
    service = _service(finalizers=[FINALIZER, "example.com/keep"], deletionTimestamp="2026-12-08T00:00:00Z")
    _made(mirror, _service(), [_node("a", "10.0.0.1")])
    controller.service_event("MODIFIED", service)
    await controller.sync("shop/web")
    kinds = [call[1] for call in controller.fake.calls]
    assert [call[0] for call in controller.fake.calls] == ["delete"] * 5
    assert kinds[-2:] == ["loadbalancerpools", "loadbalancers"]  # the pool's children before the pool
    assert controller.events == ["DeletingLoadBalancer"]

    for body in mirror.bodies():  # their finalizers emptied the cloud; they are gone
        mirror._deliver(str(body["kind"]), "DELETED", body)
    controller.fake.calls.clear()
    await controller.sync("shop/web")
    assert controller.fake.calls == [("patch", "web")]
    assert controller.fake.bodies[-1]["metadata"]["finalizers"] == ["example.com/keep"]
    assert controller.events == ["DeletingLoadBalancer", "DeletedLoadBalancer"]


async def test_a_refused_write_is_looked_at_again(api: client.ApiClient) -> None:
    controller = Controller(api, Mirror(None, []))
    controller.service_event("ADDED", _service())  # no finalizer yet: the first write adds it
    controller.fake.refuse = True
    with pytest.raises(Stale):
        await controller.sync("shop/web")
    assert controller.fake.calls == [("patch", "web")]  # and nothing applied after the refusal
