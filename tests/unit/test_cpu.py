"""The benchmarks' CPU accounting reads /proc: this process's own work shows in its group."""

from __future__ import annotations

import os
import time

from lb_operator.testing import cpu


def _spin(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_a_groups_work_is_counted_and_the_machine_was_busy_meanwhile() -> None:
    groups = {"me": [os.getpid()], "gone": [2**22 + 1]}  # above pid_max's default: no such process
    before = cpu.sample(groups)
    _spin(0.3)
    usage = cpu.between(before, cpu.sample(groups))
    assert 0.25 <= usage.seconds["me"] <= 1.0
    assert usage.seconds["gone"] == 0
    assert 0 < usage.busy_share <= 1
    assert usage.cores == os.cpu_count()


def test_processes_are_found_by_their_command_line() -> None:
    assert os.getpid() in cpu.pids_running("pytest", "python")
