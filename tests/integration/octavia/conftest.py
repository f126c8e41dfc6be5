"""Fixtures of the Octavia suites: Octavia's own API server (PyPI ``octavia``) as the cloud."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lb_operator.cloud.credentials import NoAuth
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.cloud.settings import OctaviaSettings
from lb_operator.testing.octavia import PROJECT, OctaviaProcess


@pytest.fixture(scope="module")
def octavia_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("octavia") / "octavia.log"


@pytest.fixture(scope="module")
def octavia(octavia_log: Path) -> Iterator[OctaviaProcess]:
    """One Octavia for the module: changes take 50 ms, a new load balancer is ACTIVE after 0.3 s."""
    server = OctaviaProcess(octavia_log, latency=0.05, lb_ready_delay=0.3)
    yield server
    server.stop()


@pytest.fixture
async def client(octavia: OctaviaProcess) -> AsyncIterator[OctaviaClient]:
    cloud = OctaviaClient(OctaviaSettings(base_url=octavia.url, request_timeout=10), NoAuth(PROJECT))
    await cloud.open()
    yield cloud
    await cloud.close()
