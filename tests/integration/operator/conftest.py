"""The operator for real: CRDs applied, the simulator serving, `lb-operator run` as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


objects = custom_objects
