"""The cluster a test run or the demo talks to: started here, or given.

Set ``LBOP_TEST_KUBECONFIG`` to run the suites against an existing cluster
(kind, a real one): nothing is started, and tests that need to stop the API
server are skipped. Otherwise a local :class:`ControlPlane` is started from
binaries found through ``KUBEBUILDER_ASSETS`` or built by
``tools/controlplane/build.sh``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lb_operator.testing.controlplane import ControlPlane, ControlPlaneError

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "tools" / "controlplane" / "build.sh"


@dataclass(frozen=True)
class Cluster:
    """A kubeconfig, a kubectl, and — when we started it — the control plane."""

    kubeconfig: Path
    kubectl_path: Path
    control_plane: ControlPlane | None = None

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; the caller checks ``returncode``."""
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def control_plane_binaries() -> Path:
    """The folder holding etcd, kube-apiserver and kubectl (built and cached if needed)."""
    if not BUILD_SCRIPT.is_file():
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} not found: run from a source checkout, or set KUBEBUILDER_ASSETS"
        )
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed with exit code {result.returncode}; see its output above"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _external_kubectl() -> Path:
    found = os.environ.get("LBOP_KUBECTL") or shutil.which("kubectl")
    return Path(found) if found else control_plane_binaries() / "kubectl"


@contextmanager
def open_cluster() -> Iterator[Cluster]:
    """The cluster of ``LBOP_TEST_KUBECONFIG``, or a local control plane for the duration."""
    external = os.environ.get("LBOP_TEST_KUBECONFIG")
    if external:
        yield Cluster(kubeconfig=Path(external), kubectl_path=_external_kubectl())
        return
    with ControlPlane(control_plane_binaries()) as plane:
        yield Cluster(kubeconfig=plane.kubeconfig, kubectl_path=plane.kubectl_path, control_plane=plane)


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def apiserver_writes(cluster: Cluster) -> Counter[str]:
    """``apiserver_request_total`` of the write verbs, per resource (``resource/subresource``)."""
    raw = cluster.kubectl("get", "--raw", "/metrics", timeout=60)
    if raw.returncode != 0:
        raise RuntimeError(f"kubectl get --raw /metrics failed: {raw.stderr}")
    writes: Counter[str] = Counter()
    for family in text_string_to_metric_families(raw.stdout):
        if family.name != "apiserver_request":  # the parser drops the counter's `_total`
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "apiserver_request_total" and labels.get("verb") in WRITE_VERBS:
                resource = labels.get("resource", "?")
                if labels.get("subresource"):
                    resource += f"/{labels['subresource']}"
                writes[resource] += int(sample.value)
    return writes
