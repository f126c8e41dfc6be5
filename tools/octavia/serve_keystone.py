"""Keystone (PyPI ``keystone``), run locally for the Octavia tests: tokens, a catalog, and users.

Run with the Python of Octavia's virtualenv (``tools/octavia/build.sh``):
Keystone is in the same pinned requirements. On a fresh SQLite database in
``--state`` it runs Keystone's own set-up (``keystone-manage db_sync``,
``fernet_setup``, ``credential_setup``, ``bootstrap``), serves its WSGI app
on ``--port``, and through its own API makes what the tests need:

- the ``load-balancer`` service with Octavia's endpoint (``--octavia-url``), so
  a client finds Octavia in the token's catalog;
- a project ``lb-operator`` and a user ``operator`` with the ``member`` role in
  it (Octavia's default policy lets a project member change its load
  balancers), and an application credential of that user;
- a user ``octavia`` with the ``service`` role, with which Octavia's
  keystonemiddleware validates the tokens it is sent.

Then it writes the URLs and those credentials (test values, not secrets of
anyone's) to ``made.json`` in ``--state``. Tokens last ``--token-seconds``, so a test
can see the operator fetch the next one. ``GET /debug/stats`` counts the
tokens issued (``POST /v3/auth/tokens`` answered 201).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import socketserver
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

CONFIG = """\
[DEFAULT]
debug = false

[database]
connection = sqlite:///{state}/keystone.sqlite

[fernet_tokens]
key_repository = {state}/fernet-keys

[fernet_receipts]
key_repository = {state}/fernet-keys

[credential]
key_repository = {state}/credential-keys

[token]
expiration = {token_seconds}
"""

ADMIN_PASSWORD = "admin-password-of-the-tests"
OPERATOR_PASSWORD = "operator-password-of-the-tests"
OCTAVIA_PASSWORD = "octavia-password-of-the-tests"


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _manage(config: Path, *args: str) -> None:
    """``keystone-manage`` (its entry point, run by this Python: the virtualenv was built elsewhere
    and moved, so its scripts' ``#!`` lines name a folder that is gone)."""
    run = "import sys; from keystone.cmd.manage import main; sys.exit(main())"
    command = [sys.executable, "-c", run, "--config-file", str(config), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"keystone-manage {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


class _Api:
    """Keystone's v3 API, as the admin of its bootstrap."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = self.login("admin", ADMIN_PASSWORD, "admin")[0]

    def login(self, user: str, password: str, project: str) -> tuple[str, dict[str, Any]]:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        request = urllib.request.Request(
            f"{self.url}/auth/tokens",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.headers["X-Subject-Token"], json.loads(answer.read())["token"]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-Auth-Token": token or self.token},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw.strip() else None

    def role(self, name: str) -> str:
        found = self.call("GET", f"roles?name={name}")["roles"]
        if found:
            return str(found[0]["id"])
        return str(self.call("POST", "roles", {"role": {"name": name}})["role"]["id"])

    def user_in_project(self, user: str, password: str, project: str, role: str) -> tuple[str, str]:
        project_id = self.call("POST", "projects", {"project": {"name": project, "domain_id": "default"}})
        pid = str(project_id["project"]["id"])
        made = self.call(
            "POST", "users", {"user": {"name": user, "password": password, "domain_id": "default"}}
        )
        uid = str(made["user"]["id"])
        self.call("PUT", f"projects/{pid}/users/{uid}/roles/{self.role(role)}")
        return pid, uid


def _prepare(api: _Api, octavia_url: str) -> dict[str, Any]:
    service = api.call("POST", "services", {"service": {"name": "octavia", "type": "load-balancer"}})
    for interface in ("public", "internal", "admin"):
        endpoint = {
            "service_id": service["service"]["id"],
            "interface": interface,
            "url": octavia_url,
            "region_id": "RegionOne",
        }
        api.call("POST", "endpoints", {"endpoint": endpoint})
    project, user = api.user_in_project("operator", OPERATOR_PASSWORD, "lb-operator", "member")
    api.user_in_project("octavia", OCTAVIA_PASSWORD, "service", "service")
    token = api.login("operator", OPERATOR_PASSWORD, "lb-operator")[0]
    credential = api.call(
        "POST",
        f"users/{user}/application_credentials",
        {"application_credential": {"name": "lb-operator"}},
        token=token,
    )["application_credential"]
    return {
        "auth_url": api.url,
        "project_id": project,
        "project_name": "lb-operator",
        "username": "operator",
        "password": OPERATOR_PASSWORD,
        "application_credential_id": credential["id"],
        "application_credential_secret": credential["secret"],
        "octavia_username": "octavia",
        "octavia_password": OCTAVIA_PASSWORD,
        "octavia_project_name": "service",
    }


def _who(raw: bytes) -> str:
    """Who asks for a token: the user's name, or ``credential:<id>`` for an application credential."""
    try:
        identity = json.loads(raw)["auth"]["identity"]
    except (ValueError, KeyError, TypeError):
        return "?"
    if "application_credential" in identity:
        return f"credential:{identity['application_credential'].get('id', '?')}"
    return str(identity.get("password", {}).get("user", {}).get("name", "?"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="folder for the database, keys and config")
    parser.add_argument("--octavia-url", required=True, help="the load-balancer endpoint for the catalog")
    parser.add_argument("--token-seconds", type=int, default=3600, help="how long a token lasts")
    args = parser.parse_args(argv)
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    config = state / "keystone.conf"
    config.write_text(CONFIG.format(state=state, token_seconds=args.token_seconds))
    url = f"http://127.0.0.1:{args.port}/v3"
    _manage(config, "db_sync")
    for keys in ("fernet_setup", "credential_setup"):
        _manage(config, keys, "--keystone-user", "root", "--keystone-group", "root")
    bootstrap = ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-region-id", "RegionOne"]
    for interface in ("admin", "internal", "public"):
        bootstrap += [f"--bootstrap-{interface}-url", url]
    _manage(config, *bootstrap)

    from keystone.server.flask import core

    del sys.argv[1:]  # Keystone's own configuration reads the command line: ours is not for it
    app = core.initialize_application("public", config_files=[str(config)])
    issued: dict[str, Any] = {"tokens": 0, "by": {}}

    def served(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/debug/stats":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(issued).encode()]
        asked = environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/v3/auth/tokens"
        who = ""
        if asked:  # whose token: read the body, then hand Keystone the same bytes
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(raw)
            who = _who(raw)

        def counted(status: str, headers: Any, exc_info: Any = None) -> Any:
            if asked and status.startswith("201"):
                issued["tokens"] += 1
                issued["by"][who] = issued["by"].get(who, 0) + 1
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return app(environ, counted)

    server = make_server("127.0.0.1", args.port, served, server_class=_Threaded, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    made = _prepare(_Api(url), args.octavia_url)
    printed = state / "made.json"  # Keystone logs to stdout too: what the tests read has a file of its own
    printed.with_suffix(".tmp").write_text(json.dumps(made))
    printed.with_suffix(".tmp").rename(printed)
    print(f"keystone: serving {url} (tokens for {args.token_seconds}s); made {printed}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
