"""`make demo` as a newcomer runs it: three replicas, the fleet Ready, a replica killed and taken over."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lb_operator.testing import Cluster


@pytest.mark.timeout(900)
def test_the_demo_runs_to_its_summary_with_no_overlaps_and_a_take_over(crds: Cluster) -> None:
    env = {**os.environ, "LBOP_KUBECONFIG": str(crds.kubeconfig)}  # the suite's cluster: start no other
    backend = ["--backend", "octavia"] if os.environ.get("LBOP_TEST_BACKEND") == "octavia" else []
    done = subprocess.run(
        [sys.executable, "-m", "lb_operator.testing.demo", "--latency", "0.05", "--timeout", "240", *backend],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-2000:]
    result = done.stdout.strip().splitlines()[-1]
    fields = dict(re.findall(r"(\w+)=(\S+)", result))
    assert result.startswith("RESULT "), result
    # The fleet's 130 objects and the classed Service's tree: a load balancer, per port (TCP, UDP) a pool,
    # a listener and a monitor (members only for Nodes, which this suite's cluster has none of).
    assert fields["objects"] == fields["ready"] == str(130 + 1 + 2 * 3), result
    assert fields["service_ingress"] != "none", result
    assert fields["overlaps"] == "0", result
    # The write counts were measured (nan when not), and the locks wrote Leases.
    assert float(fields["apiserver_writes_per_cloud_op"]) > float(fields["lease_writes_per_cloud_op"]) > 0, (
        result
    )
    # The killed replica owned objects, and every one of them moved to a survivor: a take-over happened.
    assert int(fields["killed_owned"]) > 0, result
    assert fields["moved"] == fields["killed_owned"], result
    # A SIGKILLed replica releases nothing: its objects can move only once its member lease has expired
    # (lease 5 s, renewed every third of it). Faster would mean they moved for another reason.
    assert float(fields["takeover_s"]) >= 5 * 2 / 3, result
