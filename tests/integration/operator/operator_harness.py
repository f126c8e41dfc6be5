"""The operator for real, as the operator tests start it: `lb-operator run` and the simulator as processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lb_operator.testing import Cluster
from lb_operator.testing.fleet import to_yaml
from lb_operator.testing.processes import (
    OperatorProcess,
    SimulatorProcess,
    custom_objects,
    is_ready,
    wait_for,
)

__all__ = ["Operator", "Simulator", "apply", "is_ready", "objects", "ready_at_generation", "wait_for"]


Simulator = SimulatorProcess


class Operator(OperatorProcess):
    """The operator of one test: it watches only that test's namespace, with short retry delays."""

    def __init__(
        self, cluster: Cluster, simulator: SimulatorProcess, log: Path, namespace: str, **settings: Any
    ) -> None:
        defaults = {"identity": "operator-0", "retry_delay": 0.5, "retry_delay_max": 5, "ready_poll": 0.5}
        super().__init__(cluster, simulator, log, watch_namespaces=namespace, **{**defaults, **settings})


objects = custom_objects


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
