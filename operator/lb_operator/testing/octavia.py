"""Octavia's own API server as a process (``tools/octavia/serve.py``), for the tests, the demo and benches,
with Keystone in front of it when asked (``tools/octavia/serve_keystone.py``).

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
from lb_operator.testing.fleet import OCTAVIA_SUBNET
from lb_operator.testing.processes import wait_for

BUILD_SCRIPT = REPO_ROOT / "tools" / "octavia" / "build.sh"
SERVER = REPO_ROOT / "tools" / "octavia" / "serve.py"
KEYSTONE_SERVER = REPO_ROOT / "tools" / "octavia" / "serve_keystone.py"
PROJECT = "lb-operator-tests"
"""The project the tests' objects live in (noauth: sent as ``X-Project-Id``)."""
SUBNET = OCTAVIA_SUBNET
"""A VIP and member subnet: the no-op network driver takes any."""


def octavia_python() -> Path:
    """The Python of Octavia's virtualenv, made (or found cached) by ``tools/octavia/build.sh``."""
    built = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise RuntimeError(f"tools/octavia/build.sh failed ({built.returncode}): {built.stderr[-2000:]}")
    return Path(built.stdout.strip().splitlines()[-1])


class KeystoneProcess:
    """Keystone on a free loopback port (``tools/octavia/serve_keystone.py``): its catalog names Octavia
    at ``octavia_url``; ``made`` holds the URLs and test credentials it made."""

    def __init__(self, log: Path, octavia_url: str, token_seconds: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self._state = Path(tempfile.mkdtemp(prefix="keystone-"))
        printed = self._state / "made.json"
        argv = [str(octavia_python()), str(KEYSTONE_SERVER), "--port", str(self.port)]
        argv += [
            "--state",
            str(self._state),
            "--octavia-url",
            octavia_url,
            "--token-seconds",
            str(token_seconds),
        ]
        self.process = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"Keystone exited with {self.process.returncode}; see {log}")
            return printed.exists()  # written whole, then renamed into place

        try:
            wait_for("Keystone to be set up", ready, 120, 0.2)
            self.made: dict[str, str] = json.loads(printed.read_text())
        except BaseException:  # a server that never came up is not left running
            self.stop()
            raise

    def stats(self) -> dict[str, Any]:
        """Tokens issued (``tokens``), and per user or application credential (``by``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/debug/stats", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def token(self) -> str:
        """A token of the operator's user (for the tests' own calls to Octavia)."""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.made["username"],
                            "domain": {"id": "default"},
                            "password": self.made["password"],
                        }
                    },
                },
                "scope": {"project": {"id": self.made["project_id"]}},
            }
        }
        request = urllib.request.Request(
            f"{self.url}/auth/tokens",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.headers["X-Subject-Token"])

    def revoke(self, token: str) -> None:
        """Revoke ``token`` in Keystone (its holder revoking its own: no other credential needed)."""
        request = urllib.request.Request(
            f"{self.url}/auth/tokens",
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
            method="DELETE",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204, f"Keystone answered {response.status} to a revocation"

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self._state, ignore_errors=True)


class OctaviaProcess:
    """Octavia's API server on a free loopback port, its provider played with ``latency``.

    ``keystone=False``: noauth, the project in a header. ``keystone=True``: a
    Keystone of its own first (tokens lasting ``token_seconds``, a validation
    cached by Octavia ``token_cache_seconds``, -1: none), whose
    catalog names this Octavia and whose tokens Octavia validates; the
    operator is then pointed at Keystone only (an application credential).
    """

    def __init__(
        self,
        log: Path,
        *,
        latency: float = 0.05,
        lb_ready_delay: float = 0.5,
        keystone: bool = False,
        token_seconds: int = 3600,
        token_cache_seconds: int = 300,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._state = Path(tempfile.mkdtemp(prefix="octavia-"))
        self.keystone = KeystoneProcess(log, self.url, token_seconds) if keystone else None
        argv = [str(octavia_python()), str(SERVER), "--port", str(self.port), "--state", str(self._state)]
        argv += ["--latency", str(latency), "--lb-ready-delay", str(lb_ready_delay)]
        if self.keystone is not None:
            made = self.keystone.made
            argv += ["--keystone", self.keystone.url, "--keystone-user", made["octavia_username"]]
            argv += ["--keystone-password", made["octavia_password"]]
            argv += ["--keystone-project", made["octavia_project_name"]]
            argv += ["--token-cache-seconds", str(token_cache_seconds)]
        self.process = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        try:
            wait_for("Octavia to listen", self._up, 90, 0.1)
        except BaseException:  # neither it nor its Keystone is left running
            self.stop()
            raise

    def env(self) -> dict[str, str]:
        """What points an operator at this Octavia: its URL and project, or Keystone alone."""
        if self.keystone is None:
            return {"LBOP_BACKEND": "octavia", "LBOP_CLOUD_URL": self.url, "OS_PROJECT_ID": PROJECT}
        made = self.keystone.made
        return {
            "LBOP_BACKEND": "octavia",
            "OS_AUTH_URL": made["auth_url"],
            "OS_AUTH_TYPE": "v3applicationcredential",
            "OS_APPLICATION_CREDENTIAL_ID": made["application_credential_id"],
            "OS_APPLICATION_CREDENTIAL_SECRET": made["application_credential_secret"],
        }

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
            headers={"Content-Type": "application/json", **self._credentials()},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.request.HTTPError as error:
            error.add_note(f"{method} {path} answered {error.code}: {error.read().decode(errors='replace')}")
            raise
        return json.loads(raw) if raw.strip() else None

    def log(self) -> list[dict[str, Any]]:
        """Every change Octavia answered, in the order applied, in the shape of the simulator's log."""
        result: list[dict[str, Any]] = self._debug("log")
        return result

    def list(self, path: str) -> list[dict[str, Any]]:
        """A collection as the simulator lists it (``load-balancers``, ``load-balancers/pools/<id>/members``
        …), read from Octavia and put in the simulator's shape for the checks the suites share (the
        oracle, tag lookups). Written apart from the operator's client on purpose: a checker that shared
        its translation would agree with its bugs."""
        parts = path.split("/")
        if parts == ["load-balancers"]:
            return [
                _as_cloudscale(lb, "load-balancers")
                for lb in _live(self.request("GET", "loadbalancers")["loadbalancers"])
            ]
        if len(parts) == 4 and parts[:2] == ["load-balancers", "pools"] and parts[3] == "members":
            listed = self.request("GET", f"pools/{parts[2]}/members")["members"]
            return [_as_cloudscale({**m, "pool_id": parts[2]}, "members") for m in listed]
        collection = {"pools": "pools", "listeners": "listeners", "health-monitors": "healthmonitors"}
        if len(parts) == 2 and parts[0] == "load-balancers" and parts[1] in collection:
            return [
                _as_cloudscale(item, parts[1])
                for item in _live(self.request("GET", collection[parts[1]])[collection[parts[1]]])
            ]
        raise ValueError(f"no Octavia collection for the simulator's path {path!r}")

    def simulated(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The simulator's ``request`` on Octavia, for the suites that change the cloud behind the
        operator's back: a load balancer, pool, listener or member by the simulator's path (``PATCH``,
        ``GET``, ``DELETE``), ``name``, ``enabled`` and ``tags`` changed as Octavia spells them, the
        answer in the simulator's shape. A load balancer is deleted with its tree, as cloudscale does."""
        parts = path.split("/")
        if len(parts) == 5 and parts[:2] == ["load-balancers", "pools"] and parts[3] == "members":
            pool = parts[2]
            where, singular, shape = f"pools/{pool}/members/{parts[4]}", "member", "members"
        elif len(parts) == 2 and parts[0] == "load-balancers":
            where, singular, shape, pool = f"loadbalancers/{parts[1]}", "loadbalancer", "load-balancers", ""
        elif len(parts) == 3 and parts[0] == "load-balancers" and parts[1] in ("pools", "listeners"):
            where, singular, shape, pool = f"{parts[1]}/{parts[2]}", parts[1][:-1], parts[1], ""
        else:
            raise ValueError(f"no Octavia object for the simulator's path {path!r}")
        if method == "DELETE":
            return self.request("DELETE", f"{where}?cascade=true" if singular == "loadbalancer" else where)
        if method == "PATCH":
            names = {"name": "name", "enabled": "admin_state_up"}
            changed = {names[key]: value for key, value in (body or {}).items() if key in names}
            if "tags" in (body or {}):
                changed["tags"] = [f"{key}={value}" for key, value in (body or {})["tags"].items()]
            if len(changed) != len(body or {}):
                raise ValueError(f"fields not translated for Octavia: {sorted(body or {})}")
            self.request("PUT", where, {singular: changed})
            return None
        if method != "GET":
            raise ValueError(f"{method} is not translated for Octavia")
        found = self.request("GET", where)[singular]
        return _as_cloudscale({**found, "pool_id": pool} if pool else found, shape)

    def _credentials(self) -> dict[str, str]:
        if self.keystone is None:
            return {"X-Project-Id": PROJECT}
        return {"X-Auth-Token": self.keystone.token()}

    def _debug(self, path: str, method: str = "GET", body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/debug/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.request.HTTPError as error:
            answered = error.read().decode(errors="replace")
            error.add_note(f"{method} /debug/{path} answered {error.code}: {answered}")
            raise

    def stats(self) -> dict[str, Any]:
        """Requests, mutations, 409 answers (``conflicts``, also as ``overlaps``: the simulator's name for
        its oracle), injected faults and live objects per kind."""
        result: dict[str, Any] = self._debug("stats")
        result["overlaps"] = result["conflicts"]
        return result

    def set_faults(self, **fields: Any) -> dict[str, Any]:
        """The simulator's ``set_faults``: ``fault_500``, ``fault_hang``, ``fault_lost``, ``hang_seconds``,
        ``methods``, injected in front of Octavia by ``tools/octavia/serve.py``."""
        result: dict[str, Any] = self._debug("faults", "PUT", fields)
        return result

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self._state, ignore_errors=True)
        if self.keystone is not None:
            self.keystone.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if item.get("provisioning_status") != "DELETED"]


def _as_cloudscale(item: dict[str, Any], collection: str) -> dict[str, Any]:
    """An Octavia object in the simulator's shape: the fields the shared checks read."""
    tags = dict(tag.partition("=")[::2] for tag in item.get("tags") or [])
    shaped: dict[str, Any] = {"uuid": item["id"], "name": item.get("name") or "", "tags": tags}
    shaped["enabled"] = item.get("admin_state_up", True)
    if collection == "load-balancers":
        shaped["status"] = item["provisioning_status"]
        shaped["vip_addresses"] = [{"address": item["vip_address"]}] if item.get("vip_address") else []
    elif collection == "pools":
        shaped["load_balancer"] = {"uuid": item["loadbalancers"][0]["id"]}
        shaped["algorithm"] = item["lb_algorithm"].lower()
        shaped["protocol"] = item["protocol"].lower()
    elif collection == "members":
        shaped["pool"] = {"uuid": item["pool_id"]}
        shaped["address"] = item["address"]
        shaped["protocol_port"] = item["protocol_port"]
        shaped["subnet"] = {"uuid": item.get("subnet_id")}
    elif collection == "listeners":
        shaped["pool"] = {"uuid": item["default_pool_id"]} if item.get("default_pool_id") else None
        shaped["protocol"] = item["protocol"].lower()
        shaped["protocol_port"] = item["protocol_port"]
        shaped["allowed_cidrs"] = item.get("allowed_cidrs") or []
    elif collection == "health-monitors":
        shaped.pop("name")
        shaped["pool"] = {"uuid": item["pools"][0]["id"]}
        shaped["type"] = item["type"].lower()
        shaped["delay_s"], shaped["timeout_s"] = item["delay"], item["timeout"]
        if item.get("url_path"):
            shaped["http"] = {"url_path": item["url_path"]}
    return shaped
