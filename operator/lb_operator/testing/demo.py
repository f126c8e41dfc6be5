"""``make demo``: the whole product on one machine, with no cloud account and no Docker.

Starts a local control plane (or uses the cluster of ``LBOP_KUBECONFIG``),
the simulator and the operator; applies ``crds/`` and ``examples/demo/``;
shows progress until every object is Ready; prints a summary; stops what it
started, also on Ctrl-C. The last line is machine-readable:
``RESULT objects=… ready=… seconds=… overlaps=… lock_waits=… events_per_object=… error_lines=…``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from lb_operator.testing.cluster import REPO_ROOT, Cluster, open_cluster
from lb_operator.testing.processes import (
    OperatorProcess,
    SimulatorProcess,
    custom_objects,
    is_ready,
)

NAMESPACE = "lb-demo"


@contextmanager
def demo_cluster() -> Iterator[Cluster]:
    """The cluster of LBOP_KUBECONFIG, else a local control plane for the demo's duration."""
    given = os.environ.get("LBOP_KUBECONFIG")
    if given:
        os.environ["LBOP_TEST_KUBECONFIG"] = given
    with open_cluster() as cluster:
        yield cluster


def _events(cluster: Cluster) -> list[dict[str, Any]]:
    """The Events of the demo's namespace (what `kubectl describe` shows a person)."""
    events = cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json")
    if events.returncode != 0:
        return []
    items: list[dict[str, Any]] = json.loads(events.stdout)["items"]
    return items


def _run(cluster: Cluster, logs: Path, stack: ExitStack, args: argparse.Namespace) -> tuple[str, bool]:
    say = print
    applied = cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    if applied.returncode != 0:
        raise RuntimeError(f"applying crds/ failed: {applied.stderr}")
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    simulator = SimulatorProcess(logs / "simulator.log", latency=args.latency)
    stack.callback(simulator.stop)
    operator = OperatorProcess(cluster, simulator, logs / "operator.log", watch_namespaces=NAMESPACE)
    stack.callback(operator.stop)
    say(f"simulator at {simulator.url}; operator and simulator logs in {logs}")

    started = time.monotonic()
    applied = cluster.kubectl("apply", "-f", str(REPO_ROOT / "examples" / "demo"), timeout=300)
    if applied.returncode != 0:
        raise RuntimeError(f"applying examples/demo/ failed: {applied.stderr}")
    total = ready = 0
    while time.monotonic() - started < args.timeout:
        found = custom_objects(cluster, NAMESPACE)
        total, ready = len(found), sum(is_ready(o) for o in found)
        stats = simulator.stats()
        say(
            f"{time.monotonic() - started:6.1f}s  Ready {ready:4}/{total}  "
            f"cloud mutations {stats['mutations']:4}  overlaps {stats['overlaps']}"
        )
        if total and ready == total:
            break
        if operator.process.poll() is not None:
            raise RuntimeError(
                f"the operator exited with {operator.process.returncode}; see {logs}/operator.log"
            )
        time.sleep(1)
    seconds = time.monotonic() - started
    stats = simulator.stats()
    events = _events(cluster)
    waits = sum(e["reason"] == "WaitingForLock" for e in events)
    posted = sum(e.get("count", 1) for e in events)
    errors = sum(" ERROR " in line for line in (logs / "operator.log").read_text().splitlines())
    say("")
    say(f"objects: {total}, Ready: {ready}, in {seconds:.1f}s")
    say(f"cloud: {stats['mutations']} mutations, {stats['overlaps']} overlaps (must be 0)")
    say(f"Events: {posted} for {total} objects ({posted / max(total, 1):.2f} each), {waits} WaitingForLock")
    say(f"ERROR lines in the operator's log: {errors}")
    if cluster.control_plane is None:  # a cluster we did not start: leave it as we found it
        say("deleting the demo objects from the cluster ...")
        cluster.kubectl("delete", "-f", str(REPO_ROOT / "examples" / "demo"), "--timeout=300s", timeout=320)
    overlaps = stats["overlaps"]
    line = (
        f"RESULT objects={total} ready={ready} seconds={seconds:.1f} overlaps={overlaps} lock_waits={waits} "
        f"events_per_object={posted / max(total, 1):.2f} error_lines={errors}"
    )
    return line, bool(total) and ready == total and overlaps == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per cloud change (default 0.2)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for Ready (default 600)")
    args = parser.parse_args()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    logs = Path(tempfile.mkdtemp(prefix="lbop-demo-"))
    try:
        with demo_cluster() as cluster, ExitStack() as stack:
            result, ok = _run(cluster, logs, stack, args)
    except KeyboardInterrupt:
        print("interrupted: stopped everything the demo started", file=sys.stderr)
        return 130
    print(result)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
