"""Fixtures of the operator tests: a namespace of their own and the simulator as the cloud."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_harness import Simulator

from lb_operator.testing import Cluster


@pytest.fixture
def ns(crds: Cluster) -> str:
    """A fresh namespace; the operator of the test watches only it."""
    name = f"op-{uuid.uuid4().hex[:6]}"
    assert crds.kubectl("create", "namespace", name).returncode == 0
    return name


@pytest.fixture
def simulator(logs: Path) -> Iterator[Simulator]:
    """The simulator as a process: changes take 50 ms, a new load balancer is running after 0.5 s."""
    sim = Simulator(logs / "simulator.log", latency=0.05, lb_ready_delay=0.5)
    yield sim
    sim.stop()
