"""Proof that the control plane the suites run against is a real kube-apiserver:
optimistic concurrency, watches, structural-schema validation and RBAC behave
as they do in a production cluster."""

from __future__ import annotations

import asyncio
import datetime
import textwrap
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes.aio import client, watch
from kubernetes.aio.client.exceptions import ApiException

from lb_operator.testing import Cluster

DEADLINE = 30.0


def _lease(name: str, holder: str) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(
            holder_identity=holder,
            lease_duration_seconds=15,
            acquire_time=datetime.datetime.now(datetime.UTC),
        ),
    )


async def test_stale_resource_version_update_is_a_conflict_and_watch_sees_the_winner(
    api: client.ApiClient, namespace: str
) -> None:
    leases = client.CoordinationV1Api(api)
    created = await leases.create_namespaced_lease(namespace, _lease("proof", "a"))
    stale_version = created.metadata.resource_version

    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    watcher = watch.Watch()

    async def follow() -> None:
        async for event in watcher.stream(
            leases.list_namespaced_lease, namespace, resource_version=stale_version
        ):
            await seen.put(event["raw_object"])

    follower = asyncio.create_task(follow())
    try:
        created.spec.holder_identity = "b"
        updated = await leases.replace_namespaced_lease("proof", namespace, created)
        assert updated.metadata.resource_version != stale_version

        created.metadata.resource_version = stale_version
        created.spec.holder_identity = "c"
        with pytest.raises(ApiException) as conflict:
            await leases.replace_namespaced_lease("proof", namespace, created)
        assert conflict.value.status == 409

        async with asyncio.timeout(DEADLINE):
            event = await seen.get()
        assert event["spec"]["holderIdentity"] == "b"
        assert event["metadata"]["resourceVersion"] == updated.metadata.resource_version
        current = await leases.read_namespaced_lease("proof", namespace)
        assert current.spec.holder_identity == "b"
    finally:
        watcher.stop()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.proof.lboperator.dev
    spec:
      group: proof.lboperator.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
        - name: v1
          served: true
          storage: true
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  required: [size]
                  properties:
                    size: {type: integer, minimum: 1, maximum: 10}
    """
)


def _widget(namespace: str, size: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: proof.lboperator.dev/v1
        kind: Widget
        metadata: {{name: w{size}, namespace: {namespace}}}
        spec: {{size: {size}}}
        """
    )


def test_kubectl_apply_is_validated_against_the_crd_schema(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    applied = cluster.kubectl("apply", "-f", str(crd))
    assert applied.returncode == 0, applied.stderr
    established = cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/widgets.proof.lboperator.dev",
        f"--timeout={DEADLINE:.0f}s",
    )
    assert established.returncode == 0, established.stderr

    valid = cluster.kubectl("apply", "-f", "-", input=_widget(namespace, 3))
    assert valid.returncode == 0, valid.stderr

    invalid = cluster.kubectl("apply", "-f", "-", input=_widget(namespace, 11))
    assert invalid.returncode != 0
    assert "spec.size" in invalid.stderr
    assert "should be less than or equal to 10" in invalid.stderr


def _require_control_plane(cluster: Cluster) -> None:
    if cluster.control_plane is None:
        pytest.skip("needs the suite's own control plane (LBOP_TEST_KUBECONFIG is set)")


def test_rbac_denies_a_user_without_bindings(cluster: Cluster, namespace: str) -> None:
    _require_control_plane(cluster)
    assert cluster.control_plane is not None
    stranger = cluster.control_plane.user_kubeconfig(f"stranger-{uuid.uuid4().hex[:6]}")

    denied = Cluster(kubeconfig=stranger, kubectl_path=cluster.kubectl_path).kubectl(
        "get", "leases", "-n", namespace
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert 'cannot list resource "leases"' in denied.stderr

    allowed = cluster.kubectl("get", "leases", "-n", namespace)
    assert allowed.returncode == 0, allowed.stderr


async def test_apiserver_restart_keeps_the_data_in_etcd(
    cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    _require_control_plane(cluster)
    assert cluster.control_plane is not None
    leases = client.CoordinationV1Api(api)
    await leases.create_namespaced_lease(namespace, _lease("survivor", "before-restart"))

    await asyncio.to_thread(cluster.control_plane.stop_apiserver)
    with pytest.raises(aiohttp.ClientConnectionError):  # refused: nothing listens on its port now
        await leases.read_namespaced_lease("survivor", namespace, _request_timeout=5)

    await asyncio.to_thread(cluster.control_plane.start_apiserver)
    survivor = await leases.read_namespaced_lease("survivor", namespace)
    assert survivor.spec.holder_identity == "before-restart"
