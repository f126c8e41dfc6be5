"""What a replica serves over HTTP: Prometheus metrics at /metrics and Kopf's health endpoint at /healthz."""

from __future__ import annotations

import urllib.request
from collections import Counter
from pathlib import Path

from operator_harness import Operator, Simulator, is_ready, objects, wait_for
from prometheus_client.parser import text_string_to_metric_families

from lb_operator.testing import Cluster
from lb_operator.testing.controlplane import free_port
from lb_operator.testing.fleet import fleet, to_yaml


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except OSError as error:  # not listening yet
        return 0, str(error)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (found, have), value in samples.items() if found == name and wanted <= have)


def test_a_replica_serves_its_metrics_and_health(
    crds: Cluster, ns: str, simulator: Simulator, logs: Path
) -> None:
    metrics_port, health_port = free_port(), free_port()
    operator = Operator(
        crds,
        simulator,
        logs / "operator.log",
        ns,
        listen_address="127.0.0.1",
        metrics_port=metrics_port,
        health_port=health_port,
    )
    try:
        manifests = fleet(ns, 2, 1, 2)
        applied = crds.kubectl("apply", "-f", "-", input=to_yaml(manifests))
        assert applied.returncode == 0, applied.stderr
        wait_for(
            "the fleet to be Ready",
            lambda: sum(is_ready(o) for o in objects(crds, ns)) == len(manifests),
            120,
        )
        wait_for("the health endpoint", lambda: _get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200, 30)

        status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200, text
        samples = _samples(text)
        kinds = Counter(m["kind"] for m in manifests)
        for kind in ("LoadBalancer", "LoadBalancerPool", "LoadBalancerPoolMember"):
            # One change handler per object ends Ready, once: exact (a second would be a double reconcile).
            ready = _total(samples, "lbop_reconciles_total", kind=kind, trigger="change", outcome="Ready")
            assert ready == kinds[kind], kind
        # Each object is created once: one 201 and one lock of its tree each (a double create would show).
        assert _total(samples, "lbop_cloud_requests_total", method="POST", outcome="201") == len(manifests)
        assert _total(samples, "lbop_mutex_acquisitions_total", kind="lb") == len(manifests)
        assert _total(samples, "lbop_mutex_wait_seconds_count", kind="lb") == len(manifests)
        # Reads vary with timing (a child may look at its parent once or twice): only a lower bound holds.
        assert _total(samples, "lbop_cloud_request_seconds_count") > len(manifests)
        assert _total(samples, "lbop_shard_objects", member="operator-0") == len(manifests)
        assert _total(samples, "lbop_sharder_leader") == 1
        assert ("lbop_changes_under_way", frozenset()) in samples, "the gauge of changes is not served"
        assert _total(samples, "lbop_changes_under_way") == 0, "a change is still under way at rest"
    finally:
        operator.stop()
