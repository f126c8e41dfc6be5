"""Fixtures of the operator tests: a namespace of their own and the cloud: the simulator, or with
``LBOP_TEST_BACKEND=octavia`` Octavia's own API server (``make test-octavia``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_harness import Simulator, start_cloud

from lb_operator.testing import Cluster


@pytest.fixture
def ns(crds: Cluster) -> str:
    """A fresh namespace; the operator of the test watches only it."""
    name = f"op-{uuid.uuid4().hex[:6]}"
    assert crds.kubectl("create", "namespace", name).returncode == 0
    return name


@pytest.fixture
def simulator(logs: Path) -> Iterator[Simulator]:
    """The cloud as a process: changes take 50 ms, a new load balancer is running after 0.5 s."""
    cloud = start_cloud(logs, latency=0.05, lb_ready_delay=0.5)
    yield cloud
    cloud.stop()
