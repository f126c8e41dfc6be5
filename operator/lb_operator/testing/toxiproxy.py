"""A real fault-injecting TCP proxy between one operator replica and the API server: toxiproxy.

Why toxiproxy: a partition that leaves connections *open* (packets dropped,
no FIN, no RST: the half-open case) is what makes a replica blind while it
looks connected, and no signal or process kill produces it. Toxiproxy's
``timeout`` toxic with a timeout of 0 drops every byte in both directions
and keeps the sockets open until the toxic is removed — on connections
already open and on new ones alike. It is built from its Go module and
cached like the control plane (``tools/toxiproxy/build.sh``).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from lb_operator.testing.cluster import REPO_ROOT, Cluster
from lb_operator.testing.controlplane import free_port

BUILD_SCRIPT = REPO_ROOT / "tools" / "toxiproxy" / "build.sh"
BLACKHOLE = ("blackhole-up", "blackhole-down")


def toxiproxy_binary() -> Path:
    """The toxiproxy server (built and cached if needed)."""
    result = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}; see its output above")
    return Path(result.stdout.strip().splitlines()[-1])


class Toxiproxy:
    """A toxiproxy server on loopback with one proxy in front of the API server of ``cluster``."""

    def __init__(self, cluster: Cluster, log: Path) -> None:
        self.api_port = free_port()
        self.listen_port = free_port()
        self._process = subprocess.Popen(
            [str(toxiproxy_binary()), "-host", "127.0.0.1", "-port", str(self.api_port)],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up()
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        server = config["clusters"][0]["cluster"]["server"]
        upstream = server.split("://", 1)[1].rstrip("/")
        self._call(
            "POST",
            "/proxies",
            {"name": "apiserver", "listen": f"127.0.0.1:{self.listen_port}", "upstream": upstream},
        )
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{self.listen_port}"
        self.kubeconfig = log.with_name("kubeconfig-via-toxiproxy")
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.blackholed = False

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"toxiproxy exited with {self._process.returncode}")
            try:
                self._call("GET", "/version")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            return raw.decode(errors="replace")

    def blackhole(self) -> None:
        """Drop every byte both ways on every connection, open or new; keep the sockets open."""
        for name, stream in zip(BLACKHOLE, ("upstream", "downstream"), strict=True):
            toxic = {"name": name, "type": "timeout", "stream": stream, "attributes": {"timeout": 0}}
            self._call("POST", "/proxies/apiserver/toxics", toxic)
        self.blackholed = True

    def heal(self) -> None:
        """Let bytes through again (connections that lost bytes stay broken, as after a real cut)."""
        for name in BLACKHOLE:
            self._call("DELETE", f"/proxies/apiserver/toxics/{name}")
        self.blackholed = False

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
