"""The Lease mutex across real OS processes (stand-in replicas) on the real API server."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lb_operator.testing import Cluster

WORKER = Path(__file__).with_name("worker.py")
FAST = {"lease_duration": 3, "renew_deadline": 2, "renew_interval": 0.5, "request_timeout": 2}
Event = dict[str, Any]


class Workers:
    """Spawns worker processes that share one JSON-lines log, and reads that log."""

    def __init__(self, cluster: Cluster, namespace: str, log: Path) -> None:
        self.cluster, self.namespace, self.log = cluster, namespace, log
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, mode: str, identity: str, keys: list[str], **extra: Any) -> subprocess.Popen[bytes]:
        cfg = {
            "mode": mode,
            "identity": identity,
            "keys": keys,
            "kubeconfig": str(self.cluster.kubeconfig),
            "namespace": self.namespace,
            "log": str(self.log),
            **extra,
        }
        process = subprocess.Popen([sys.executable, str(WORKER), json.dumps(cfg)])
        self.processes.append(process)
        return process

    def events(self, event: str | None = None, pid: int | None = None) -> list[Event]:
        if not self.log.exists():
            return []
        found = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [
            e for e in found if (event is None or e["event"] == event) and (pid is None or e["pid"] == pid)
        ]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        """Wait until ``check()`` holds, failing with ``what`` at the deadline (or if a worker crashed)."""
        deadline = time.monotonic() + timeout
        while not check():
            crashed = [p for p in self.processes if p.poll() not in (None, 0, -signal.SIGKILL)]
            assert not crashed, f"worker exited with {crashed[0].returncode} while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
            time.sleep(0.01)

    def first(self, event: str, pid: int) -> Event:
        self.wait_for(f"{event} from {pid}", lambda: bool(self.events(event, pid)), 30)
        return self.events(event, pid)[0]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def workers(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Workers]:
    handle = Workers(cluster, namespace, tmp_path / "events.jsonl")
    yield handle
    handle.stop_all()


def test_four_processes_never_overlap_and_tokens_increase(workers: Workers) -> None:
    keys = ["lb/alpha", "lb/beta", "lb/gamma"]
    processes = [workers.spawn("sections", f"replica-{n}", keys, tasks=3, sections=30) for n in range(4)]
    for process in processes:
        assert process.wait(timeout=240) == 0

    sections = workers.events("section")
    assert len(sections) == 4 * 3 * 30
    by_key: dict[str, list[Event]] = defaultdict(list)
    for section in sections:
        by_key[section["key"]].append(section)
    assert set(by_key) == set(keys)
    for key, runs in by_key.items():
        runs.sort(key=lambda s: s["start"])
        for before, after in itertools.pairwise(runs):
            assert before["end"] <= after["start"], f"{key}: sections overlap: {before} and {after}"
            assert before["token"] < after["token"], (
                f"{key}: fencing token did not increase: {before} {after}"
            )
    assert len({section["pid"] for section in sections}) == 4


def test_cancelled_holder_hands_over_to_another_process_quickly(workers: Workers) -> None:
    holder = workers.spawn("hold", "holder", ["lb/handover"])
    workers.first("acquired", holder.pid)
    waiter = workers.spawn("wait", "waiter", ["lb/handover"])
    workers.first("waiting", waiter.pid)  # parked on its watch behind the holder (its wait hook said so)

    holder.send_signal(signal.SIGUSR1)
    cancelled = workers.first("cancel", holder.pid)
    acquired = workers.first("acquired", waiter.pid)
    assert workers.first("released", holder.pid)
    handover = acquired["t"] - cancelled["t"]
    # Not a speed claim (make bench-mutex measures that): it separates a hand-over woken by the release
    # (milliseconds) from one that polls (client-go: every 2 s) or waits for the lease to run out (15 s).
    assert 0 < handover < 2.0, f"hand-over took {handover:.3f}s"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["dead", "frozen"])
def test_a_dead_or_frozen_holder_is_taken_over_after_its_lease_runs_out_and_not_before(
    workers: Workers, how: signal.Signals
) -> None:
    holder = workers.spawn("hold", "holder", ["lb/crash"], settings=FAST)
    held = workers.first("acquired", holder.pid)
    waiter = workers.spawn("wait", "waiter", ["lb/crash"], settings=FAST)
    workers.first("waiting", waiter.pid)

    stopped_at = time.monotonic()
    holder.send_signal(how)
    acquired = workers.first("acquired", waiter.pid)
    takeover = acquired["t"] - stopped_at
    # The last renewal came at most one renew interval before the signal; the
    # waiter counts the full duration from when it saw that renewal.
    earliest = FAST["lease_duration"] - FAST["renew_interval"] - 0.1
    assert earliest <= takeover <= FAST["lease_duration"] + 1, f"take-over after {takeover:.2f}s"
    assert acquired["transitions"] == held["transitions"] + 1
    assert acquired["token"] > held["token"]


def test_paused_holder_is_stopped_and_writes_nothing_after_the_takeover(workers: Workers) -> None:
    holder = workers.spawn("hold", "holder", ["lb/pause"], settings=FAST)
    held = workers.first("acquired", holder.pid)
    waiter = workers.spawn("wait", "waiter", ["lb/pause"], settings=FAST)
    workers.first("waiting", waiter.pid)

    paused_at = time.monotonic()
    holder.send_signal(signal.SIGSTOP)
    acquired = workers.first("acquired", waiter.pid)
    assert acquired["t"] - paused_at >= FAST["lease_duration"] - FAST["renew_interval"] - 0.1
    holder.send_signal(signal.SIGCONT)
    stopped = workers.first("stopped", holder.pid)

    assert stopped["reason"] == "HoldLost"
    late = [w for w in workers.events("write", holder.pid) if w["t"] >= acquired["t"]]
    assert late == [], f"the paused holder wrote after the take-over: {late}"
    assert workers.events("write", holder.pid), "the holder never wrote: the test proves nothing"
    assert acquired["token"] > held["token"]
