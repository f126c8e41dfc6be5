"""Where a benchmark's CPU time went: the machine as a whole and named groups of processes (Linux /proc).

On a shared 2-core machine the operator, the API server, etcd and the
simulator compete for the same cores; a makespan says nothing of whether the
operator waited or the machine was full. Two samples, one before and one
after, give each group's CPU seconds and the machine's busy share between
them.
"""

from __future__ import annotations

import os
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


@dataclass(frozen=True)
class Sample:
    busy: float
    total: float
    groups: dict[str, float]


def sample(groups: dict[str, list[int]]) -> Sample:
    """The machine's CPU seconds and each group's, now."""
    busy, total = _machine()
    return Sample(busy, total, {name: sum(process_seconds(p) for p in pids) for name, pids in groups.items()})


@dataclass(frozen=True)
class Usage:
    """CPU between two samples: the machine's busy share of all its cores, and seconds per group."""

    cores: int
    busy_share: float
    seconds: dict[str, float]
    other: float  # busy seconds of every other process (the benchmark itself, the system)


def between(before: Sample, after: Sample) -> Usage:
    busy, total = after.busy - before.busy, after.total - before.total
    seconds = {name: after.groups[name] - before.groups.get(name, 0.0) for name in after.groups}
    return Usage(
        os.cpu_count() or 1,
        min(1.0, busy / total) if total else float("nan"),  # a fully busy machine: 1 (not 1 + rounding)
        seconds,
        max(0.0, busy - sum(seconds.values())),
    )
