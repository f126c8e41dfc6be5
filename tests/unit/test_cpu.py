"""The benchmarks' CPU accounting reads /proc: this process's own work shows in its group, and work that
finds every core taken shows as waiting."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_more_spinners_than_cores_wait_for_a_core() -> None:
    cores = os.cpu_count() or 1
    spin = "import time\nt = time.monotonic() + 3\nwhile time.monotonic() < t: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores + 1)]
    try:
        groups = {"spinners": [p.pid for p in spinners]}
        before = cpu.sample(groups)
        time.sleep(1.0)
        usage = cpu.between(before, cpu.sample(groups))  # sampled while they still run: their counts
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    # cores + 1 busy processes on `cores` cores: about one of them waits at any time.
    assert usage.waited["spinners"] >= 0.3
    assert 0 < usage.main_waited["spinners"] <= usage.waited["spinners"] + 1e-9
    assert usage.stalled_share >= 0.3
    assert 0.9 <= usage.span <= 5
