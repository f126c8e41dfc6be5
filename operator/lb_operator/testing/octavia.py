"""Octavia's own API server as a process (``tools/octavia/serve.py``), for the tests, the demo and benches.

It runs with the Python of Octavia's own cached virtualenv
(``tools/octavia/build.sh`` makes it once, about a minute and a half); the
provider's part (PENDING_* → ACTIVE after a latency) is played by the same
process. ``stats()["conflicts"]`` counts its 409 answers: the overlap oracle,
as the simulator's ``overlaps`` is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from lb_operator.testing.cluster import REPO_ROOT
from lb_operator.testing.controlplane import free_port
from lb_operator.testing.processes import wait_for

BUILD_SCRIPT = REPO_ROOT / "tools" / "octavia" / "build.sh"
SERVER = REPO_ROOT / "tools" / "octavia" / "serve.py"
PROJECT = "lb-operator-tests"
"""The project the tests' objects live in (noauth: sent as ``X-Project-Id``)."""
SUBNET = "5f6e0a44-5b0f-4b4e-9a43-8a0f4e6b1c2d"
"""A VIP and member subnet: the no-op network driver takes any."""


def octavia_python() -> Path:
    """The Python of Octavia's virtualenv, made (or found cached) by ``tools/octavia/build.sh``."""
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise RuntimeError(f"tools/octavia/build.sh failed ({built.returncode}): {built.stderr[-2000:]}")
    return Path(built.stdout.strip().splitlines()[-1])


class OctaviaProcess:
    """Octavia's API server on a free loopback port, noauth, its provider played with ``latency``."""

    def __init__(self, log: Path, *, latency: float = 0.05, lb_ready_delay: float = 0.5) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._state = Path(tempfile.mkdtemp(prefix="octavia-"))
        argv = [str(octavia_python()), str(SERVER), "--port", str(self.port), "--state", str(self._state)]
        argv += ["--latency", str(latency), "--lb-ready-delay", str(lb_ready_delay)]
        self.process = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        wait_for("Octavia to listen", self._up, 90, 0.1)

    def env(self) -> dict[str, str]:
        """What points an operator at this Octavia."""
        return {"LBOP_BACKEND": "octavia", "LBOP_CLOUD_URL": self.url, "OS_PROJECT_ID": PROJECT}

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Octavia's API server exited with {self.process.returncode}")
        try:
            self.stats()
        except OSError:
            return False
        return True

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API directly (``path`` under ``/v2/lbaas/``), behind the operator's back."""
        request = urllib.request.Request(
            f"{self.url}/v2/lbaas/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Project-Id": PROJECT, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.request.HTTPError as error:
            error.add_note(f"{method} {path} answered {error.code}: {error.read().decode(errors='replace')}")
            raise
        return json.loads(raw) if raw.strip() else None

    def stats(self) -> dict[str, Any]:
        """Requests, mutations, 409 answers (``conflicts``) and live objects per kind."""
        with urllib.request.urlopen(f"{self.url}/debug/stats", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self._state, ignore_errors=True)
