"""The operator for real, as the operator tests start it: `lb-operator run` and the cloud as processes.

The cloud is the simulator, or Octavia's own API server with
``LBOP_TEST_BACKEND=octavia`` (``make test-octavia``). Both list and count in
the simulator's shapes (``OctaviaProcess.list``); a test whose case only the
simulator can make is marked ``simulator_only`` and its docstring says why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lb_operator.testing import Cluster
from lb_operator.testing.fleet import OCTAVIA_SUBNET, to_yaml
from lb_operator.testing.octavia import OctaviaProcess
from lb_operator.testing.processes import (
    OperatorProcess,
    SimulatorProcess,
    custom_objects,
    is_ready,
    wait_for,
)

__all__ = [
    "LB_PLACE",
    "ON_OCTAVIA",
    "Operator",
    "Simulator",
    "apply",
    "behind",
    "is_ready",
    "objects",
    "ready_at_generation",
    "simulator_only",
    "start_cloud",
    "wait_for",
]


Simulator = SimulatorProcess | OctaviaProcess
"""The cloud of a test (named for the simulator, its default)."""

ON_OCTAVIA = os.environ.get("LBOP_TEST_BACKEND") == "octavia"

LB_PLACE: dict[str, Any] = (
    {"vipAddresses": [{"subnetUUID": OCTAVIA_SUBNET}]} if ON_OCTAVIA else {"zone": "lpg1"}
)
"""Where a load balancer of the tests is: cloudscale's zone, or Octavia's VIP subnet."""

simulator_only = pytest.mark.skipif(ON_OCTAVIA, reason="only the simulator makes the case (see docstring)")


class Operator(OperatorProcess):
    """The operator of one test: it watches only that test's namespace, with short retry delays."""

    def __init__(
        self, cluster: Cluster, simulator: Simulator, log: Path, namespace: str, **settings: Any
    ) -> None:
        defaults = {"identity": "operator-0", "retry_delay": 0.5, "retry_delay_max": 5, "ready_poll": 0.5}
        super().__init__(cluster, simulator, log, watch_namespaces=namespace, **{**defaults, **settings})


objects = custom_objects


def start_cloud(log_dir: Path, prefix: str = "", **flags: Any) -> Simulator:
    """The test's cloud as a process (``latency``, ``lb_ready_delay``; the simulator takes more flags),
    logging to ``<prefix>simulator.log`` or ``<prefix>octavia.log`` in ``log_dir``."""
    if ON_OCTAVIA:
        return OctaviaProcess(log_dir / f"{prefix}octavia.log", **flags)
    return SimulatorProcess(log_dir / f"{prefix}simulator.log", **flags)


def behind(cloud: Simulator, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Read or change the cloud behind the operator's back (a console's edit), in the simulator's paths
    and fields on either cloud."""
    if isinstance(cloud, OctaviaProcess):
        return cloud.simulated(method, path, body)
    return cloud.request(method, path, body)


def apply(cluster: Cluster, manifests: list[dict[str, Any]]) -> None:
    """``kubectl apply`` the manifests; fail the test if it refuses."""
    applied = cluster.kubectl("apply", "-f", "-", input=to_yaml(manifests), timeout=120)
    assert applied.returncode == 0, applied.stderr


def ready_at_generation(cluster: Cluster, namespace: str, count: int) -> bool:
    """``count`` objects in ``namespace``, each Ready at its latest generation."""
    found = objects(cluster, namespace)
    return len(found) == count and all(
        is_ready(o) and o["status"].get("observedGeneration") == o["metadata"]["generation"] for o in found
    )
