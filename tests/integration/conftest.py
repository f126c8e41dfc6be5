"""Integration tests run against the real kube-apiserver of the `cluster` fixture."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from kubernetes.aio import client

pytestmark = pytest.mark.integration


@pytest.fixture
async def namespace(api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)
