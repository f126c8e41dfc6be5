"""Fixtures shared by every suite: the cluster, and async API clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes.aio import client, config

from lb_operator.testing import Cluster, open_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A real kube-apiserver for the whole run (or the one of LBOP_TEST_KUBECONFIG)."""
    with open_cluster() as handle:
        yield handle


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    """An async API client authenticated as the cluster admin."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client
