"""The operator for real, as the operator tests start it: `lb-operator run` and the simulator as processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lb_operator.testing import Cluster
from lb_operator.testing.processes import (
    OperatorProcess,
    SimulatorProcess,
    custom_objects,
    is_ready,
    wait_for,
)

__all__ = ["Operator", "Simulator", "is_ready", "objects", "wait_for"]


Simulator = SimulatorProcess


class Operator(OperatorProcess):
    """The operator of one test: it watches only that test's namespace, with short retry delays."""

    def __init__(
        self, cluster: Cluster, simulator: SimulatorProcess, log: Path, namespace: str, **settings: Any
    ) -> None:
        defaults = {"identity": "operator-0", "retry_delay": 0.5, "retry_delay_max": 5, "ready_poll": 0.5}
        super().__init__(cluster, simulator, log, watch_namespaces=namespace, **{**defaults, **settings})


objects = custom_objects
