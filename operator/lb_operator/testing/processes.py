"""The simulator and the operator as real processes, for the tests and ``make demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from lb_operator.testing.cluster import Cluster
from lb_operator.testing.controlplane import free_port

SIMULATOR_TOKEN = "simulator-token-not-secret"


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
    """Wait until ``check()`` holds; raise ``TimeoutError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class SimulatorProcess:
    """``lb-operator simulator`` on a free loopback port, its API and its debug endpoints.

    ``flags`` become command-line flags (``fault_methods=["PATCH"]`` →
    ``--fault-methods PATCH``). ``LBOP_TEST_SIMULATOR_MODE`` sets ``--mode``
    unless a flag does: the suites run against each way the real API may
    handle overlapping changes (``reject``, ``serialize``, ``async``).
    """

    def __init__(self, log: Path, **flags: Any) -> None:
        if os.environ.get("LBOP_TEST_SIMULATOR_MODE"):
            flags.setdefault("mode", os.environ["LBOP_TEST_SIMULATOR_MODE"])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        argv = [sys.executable, "-m", "lb_operator", "simulator", "--port", str(self.port)]
        argv += ["--token", SIMULATOR_TOKEN]
        for flag, value in flags.items():
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            argv += [f"--{flag.replace('_', '-')}", text]
        self.process = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        wait_for("the simulator to listen", self._up, 30, 0.05)

    def env(self) -> dict[str, str]:
        """What points an operator at this simulator."""
        return {"CLOUDSCALE_API_TOKEN": SIMULATOR_TOKEN, "LBOP_CLOUD_URL": self.url}

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the simulator exited with {self.process.returncode}")
        try:
            self.stats()
        except OSError:
            return False
        return True

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {SIMULATOR_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API directly, behind the operator's back (drift); the decoded answer, ``None`` for 204.

        ``path`` is relative to ``/v1`` (``load-balancers/pools/<uuid>``), or
        to the server when it starts with ``/`` (``/debug/faults``). A 4xx/5xx
        raises urllib's ``HTTPError`` (``.code``); its body is read into a note.
        """
        url = f"http://127.0.0.1:{self.port}{path}" if path.startswith("/") else f"{self.url}/{path}"
        request = urllib.request.Request(
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {SIMULATOR_TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.request.HTTPError as error:
            error.add_note(f"{method} {path} answered {error.code}: {error.read().decode(errors='replace')}")
            raise
        return json.loads(raw) if raw.strip() else None

    def set_faults(self, **fields: Any) -> dict[str, Any]:
        """``PUT /debug/faults``: change the given fault settings, keep the others; all of them as now.

        ``fields``: ``fault_500``, ``fault_hang``, ``fault_lost``, ``hang_seconds``, ``methods``
        (see ``docs/backends.md``). Invalid ones raise ``HTTPError`` 400.
        """
        result: dict[str, Any] = self.request("PUT", "/debug/faults", fields)
        return result

    def stats(self) -> dict[str, Any]:
        """``/debug/stats``: mutations, overlaps, objects per kind."""
        result: dict[str, Any] = self._get("/debug/stats")
        return result

    def log(self) -> list[dict[str, Any]]:
        """``/debug/log``: every finished or rejected change, oldest first (the last 10,000)."""
        result: list[dict[str, Any]] = self._get("/debug/log")
        return result

    def list(self, path: str) -> list[dict[str, Any]]:
        """``GET /v1/<path>``."""
        result: list[dict[str, Any]] = self._get(f"/v1/{path}")
        return result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Cloud(Protocol):
    """A cloud the tests start (the simulator, Octavia's API server): what points an operator at it."""

    def env(self) -> dict[str, str]: ...


class OperatorProcess:
    """``lb-operator run`` against ``cluster`` and a cloud; ``settings`` become ``LBOP_*`` variables."""

    def __init__(
        self,
        cluster: Cluster,
        simulator: Cloud,
        log: Path,
        *,
        kubeconfig: Path | None = None,
        **settings: Any,
    ) -> None:
        """``kubeconfig``: reach the API server another way than the cluster's own (e.g. through a proxy)."""
        env = dict(
            os.environ,
            KUBECONFIG=str(kubeconfig or cluster.kubeconfig),
            LBOP_NAMESPACE="default",
            **simulator.env(),
        )
        env.update({f"LBOP_{key.upper()}": str(value) for key, value in settings.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lb_operator", "run"],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def custom_objects(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """Every object of the five kinds in ``namespace``."""
    listed = cluster.kubectl("get", "lboperator", "-n", namespace, "-o", "json")
    if listed.returncode != 0:
        raise RuntimeError(f"kubectl get lboperator failed: {listed.stderr}")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def is_ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
