"""Integration tests run against the real kube-apiserver of the `cluster` fixture."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes.aio import client

from lb_operator.testing import Cluster

pytestmark = pytest.mark.integration

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    """The cluster, with this project's CRDs applied and established."""
    applied = cluster.kubectl("apply", "-f", str(CRDS))
    assert applied.returncode == 0, applied.stderr
    ready = cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    assert ready.returncode == 0, ready.stderr
    return cluster


@pytest.fixture
async def namespace(api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)
