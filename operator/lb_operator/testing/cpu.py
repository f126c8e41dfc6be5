"""Where a benchmark's CPU time went: the machine as a whole and named groups of processes (Linux /proc).

On a shared 2-core machine the operator, the API server, etcd and the
simulator compete for the same cores; a makespan says nothing of whether the
operator waited or the machine was full. Two samples, one before and one
after, give each group's CPU seconds and the machine's busy share between
them, and how long each group was ready to run but found every core taken:
the scheduler's run-queue wait (``/proc/<pid>/task/<tid>/schedstat``, summed
over threads, and of the main thread alone: a replica's event loop) and the
share of the span in which any task of the machine waited so
(``/proc/pressure/cpu``, "some"). A thread that ended between the samples is
not counted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of every core since boot."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / _TICK, total / _TICK


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)


def pids_running(*fragments: str) -> list[int]:
    """The processes whose command line contains one of ``fragments``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(fragment in cmdline for fragment in fragments):
            found.append(int(entry.name))
    return found


def _queued(schedstat: Path) -> float:
    """Seconds a thread was runnable but not running (the second field of its ``schedstat``; 0 if gone)."""
    try:
        return int(schedstat.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def waited_seconds(pid: int) -> tuple[float, float]:
    """(every thread, the main thread) of ``pid``: seconds runnable with no free core, so far."""
    threads = sum(_queued(task / "schedstat") for task in _tasks(pid))
    return threads, _queued(Path(f"/proc/{pid}/task/{pid}/schedstat"))


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []


def _stalled() -> float:
    """Seconds since boot in which some task of the machine waited for a core (PSI; nan without it)."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(some.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class Sample:
    busy: float
    total: float
    groups: dict[str, float]
    waits: dict[str, tuple[float, float]]  # per group: (every thread, main threads) runnable, no core
    stalled: float
    at: float


def sample(groups: dict[str, list[int]]) -> Sample:
    """The machine's CPU seconds and each group's, now."""
    busy, total = _machine()
    waits = {}
    for name, pids in groups.items():
        per_pid = [waited_seconds(p) for p in pids]
        waits[name] = (sum(w[0] for w in per_pid), sum(w[1] for w in per_pid))
    return Sample(
        busy,
        total,
        {name: sum(process_seconds(p) for p in pids) for name, pids in groups.items()},
        waits,
        _stalled(),
        time.monotonic(),
    )


@dataclass(frozen=True)
class Usage:
    """CPU between two samples: the machine's busy share of all its cores, and seconds per group."""

    cores: int
    busy_share: float
    seconds: dict[str, float]
    other: float  # busy seconds of every other process (the benchmark itself, the system)
    waited: dict[str, float]  # per group: seconds its threads were runnable with every core taken
    main_waited: dict[str, float]  # the same, main threads only (a replica's event loop)
    stalled_share: float  # share of the span in which some task waited for a core (nan: no PSI)
    span: float


def between(before: Sample, after: Sample) -> Usage:
    busy, total = after.busy - before.busy, after.total - before.total
    seconds = {name: after.groups[name] - before.groups.get(name, 0.0) for name in after.groups}
    zero = (0.0, 0.0)
    span = after.at - before.at
    return Usage(
        os.cpu_count() or 1,
        min(1.0, busy / total) if total else float("nan"),  # a fully busy machine: 1 (not 1 + rounding)
        seconds,
        max(0.0, busy - sum(seconds.values())),
        {name: max(0.0, w[0] - before.waits.get(name, zero)[0]) for name, w in after.waits.items()},
        {name: max(0.0, w[1] - before.waits.get(name, zero)[1]) for name, w in after.waits.items()},
        min(1.0, (after.stalled - before.stalled) / span) if span > 0 else float("nan"),
        span,
    )
