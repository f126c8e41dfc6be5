"""Fixtures shared by every suite: the cluster, and async API clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import client, config

from lb_operator.testing import Cluster, open_cluster

CRDS = Path(__file__).resolve().parents[1] / "crds"


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


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    """The cluster, with this project's CRDs applied and established."""
    applied = cluster.kubectl("apply", "-f", str(CRDS))
    assert applied.returncode == 0, applied.stderr
    ready = cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    assert ready.returncode == 0, ready.stderr
    return cluster


@pytest.fixture
def logs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder for process logs; printed when the test failed."""
    yield tmp_path
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.name} (last 60 lines) -----")
            print("\n".join(log.read_text(errors="replace").splitlines()[-60:]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
