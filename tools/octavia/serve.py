"""Octavia's own API server (PyPI ``octavia``), run locally with the provider's part played here.

Run with the Python of Octavia's own virtualenv (``tools/octavia/build.sh``
prints it), never the operator's: Octavia pins a large dependency tree.

What is Octavia's: the whole v2 API — paths, validation, quotas, tags, the
database, and the 409 "… is immutable and cannot be updated." for a change
under a load balancer that is ``PENDING_*``. Configured with ``noauth`` (a
project comes from ``X-Project-Id``) or, with ``--keystone``, validating
Keystone tokens (keystonemiddleware, Octavia's default policy); the
``noop_driver`` provider and the no-op network driver, on SQLite.

What is played here: the provider. With the no-op provider nothing ever
leaves ``PENDING_*``, so a status task does what an amphora driver reports
when it is done: ``--latency`` seconds after a load balancer went
``PENDING_UPDATE`` (``--lb-ready-delay`` after ``PENDING_CREATE``) its tree
becomes ``ACTIVE`` and what was ``PENDING_DELETE`` is removed (a deleted load
balancer is marked ``DELETED``: it answers 404 and no longer lists). A status
task on the same database rather than a provider driver through octavia-lib:
a driver's status updates go through Octavia's driver agent (a separate
process and a Unix socket); the task is a few SQL statements and plays the
same part.

Every request is served one at a time (SQLite takes one writer; a real
Octavia serializes per load balancer with the same PENDING_* states, so the
409 answers are the same). ``GET /debug/stats`` counts requests, mutations,
409 answers (the overlap oracle), injected faults and live objects per kind.

The simulator's debug endpoints, for the same suites: ``GET /debug/log``,
every change Octavia answered (the last 10,000, in the order they were
applied, each with the object's tags after it); ``GET``/``PUT
/debug/faults``, the same fault settings as the simulator's (``fault_500``,
``fault_hang``, ``fault_lost``, ``hang_seconds``, ``methods``): a 500 before
Octavia sees the request, a hang then 504, or a 504 at once while the request
goes on to Octavia and is applied after it (a gateway that gave up). They
wrap Octavia's app; Octavia itself is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import random
import re
import socketserver
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

CONFIG = """\
[DEFAULT]
debug = false
transport_url = fake:/

[api_settings]
auth_strategy = {auth_strategy}
bind_host = 127.0.0.1
default_provider_driver = noop_driver
enabled_provider_drivers = noop_driver:The no-op provider; its part is played by tools/octavia/serve.py

[controller_worker]
network_driver = network_noop_driver
amphora_driver = amphora_noop_driver
compute_driver = compute_noop_driver

[database]
connection = sqlite:///{database}

{auth}"""

NOAUTH = """
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
"""
"""noauth: every request is its project's; the legacy policy defaults need no roles."""

KEYSTONE = """
[keystone_authtoken]
www_authenticate_uri = {url}
auth_url = {url}
auth_type = password
username = {user}
password = {password}
project_name = {project}
user_domain_name = Default
project_domain_name = Default
token_cache_time = {cache}
"""
"""Keystone: keystonemiddleware validates each token with these service credentials; Octavia's default
policy then lets a project's ``member`` change its load balancers. A validation is cached for
``--token-cache-seconds`` (keystonemiddleware's default, 300; -1: not at all, so a token revoked in
Keystone is refused at once)."""

LOOKUPS = (
    ("SUPPORTED_PROVISIONING_STATUSES", "ProvisioningStatus"),
    ("SUPPORTED_OPERATING_STATUSES", "OperatingStatus"),
    ("SUPPORTED_HEALTH_MONITOR_TYPES", "HealthMonitorType"),
    ("SUPPORTED_LB_ALGORITHMS", "Algorithm"),
    ("SUPPORTED_PROTOCOLS", "Protocol"),
    ("SUPPORTED_SP_TYPES", "SessionPersistenceType"),
    ("SUPPORTED_AMPHORA_ROLES", "AmphoraRoles"),
    ("SUPPORTED_LB_TOPOLOGIES", "LBTopology"),
    ("SUPPORTED_VRRP_AUTH", "VRRPAuthMethod"),
    ("SUPPORTED_L7RULE_TYPES", "L7RuleType"),
    ("SUPPORTED_L7RULE_COMPARE_TYPES", "L7RuleCompareType"),
    ("SUPPORTED_L7POLICY_ACTIONS", "L7PolicyAction"),
    ("SUPPORTED_CLIENT_AUTH_MODES", "ClientAuthenticationMode"),  # without it a listener fails (400)
)
"""Octavia's lookup tables (constants → model), seeded as its functional tests seed them."""

MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
LOG_LIMIT = 10_000
KINDS = {  # a path's last collection → the simulator's kind names, which the shared checks read
    "loadbalancers": "load_balancer",
    "listeners": "listener",
    "pools": "pool",
    "members": "member",
    "healthmonitors": "health_monitor",
}
OPS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
PATH = re.compile(
    r"^/v2(?:\.0)?/lbaas/(?:pools/(?P<pool>[^/]+)/)?(?P<collection>[a-z]+)(?:/(?P<id>[^/]+))?/?$"
)
TICK = 0.01
"""Seconds between two looks of the status task."""

logger = logging.getLogger("octavia-local")


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.mutations = 0
        self.conflicts = 0  # 409 answers: a change under a load balancer that was PENDING_*
        self.by_status: Counter[str] = Counter()
        self.completed = 0  # load-balancer trees the status task brought to ACTIVE or removed
        self.faults: Counter[str] = Counter()  # injected: "500", "hang", "lost"
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)

    def record(self, method: str, path: str, status: str, answer: bytes, start: float) -> None:
        """A change Octavia answered, in the shape of the simulator's ``/debug/log``."""
        matched = PATH.match(path)
        if matched is None or method not in OPS:
            return
        collection = matched["collection"]
        kind = KINDS.get(collection)
        if kind is None:
            return
        code = status.split()[0]
        entry: dict[str, Any] = {
            "kind": kind,
            "op": OPS[method],
            "uuid": matched["id"],
            "start": start,
            "end": time.monotonic(),
            "outcome": "ok" if code.startswith("2") else code,
            "tags": None,
        }
        if code.startswith("2") and method != "DELETE" and answer.strip():
            with contextlib.suppress(ValueError, AttributeError, StopIteration):
                obj = next(iter(json.loads(answer).values()))
                entry["uuid"] = obj["id"]
                entry["tags"] = dict(tag.partition("=")[::2] for tag in obj.get("tags") or [])
        self.log.append(entry)


class Faults:
    """The simulator's fault settings, drawn once per API request whose method they name (all, if none).

    Kept apart from ``lb_operator.simulator.faults`` because this server runs
    in Octavia's virtualenv, where the operator's package is not installed.
    """

    PROBABILITIES = ("fault_500", "fault_hang", "fault_lost")

    def __init__(self, seed: int | None = None) -> None:
        self.settings: dict[str, Any] = {
            "fault_500": 0.0,
            "fault_hang": 0.0,
            "fault_lost": 0.0,
            "hang_seconds": 30.0,
            "methods": [],
        }
        self._random = random.Random(seed)

    def configure(self, fields: Any) -> dict[str, list[str]]:
        """Change the given settings; the errors per field (then nothing changed)."""
        if not isinstance(fields, dict):
            return {"non_field_errors": ["Expected a JSON object of fault settings."]}
        errors: dict[str, list[str]] = {}
        merged = {**self.settings}
        for name, value in fields.items():
            if name not in self.settings:
                errors[name] = [f"Unknown field; choose among {', '.join(self.settings)}."]
            elif name == "methods":
                if not isinstance(value, list) or any(item not in METHODS for item in value):
                    errors[name] = [f"Expected a list of {', '.join(METHODS)}."]
                else:
                    merged[name] = sorted(set(value))
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                errors[name] = ["A valid number is required."]
            elif name == "hang_seconds" and value <= 0:
                errors[name] = ["Ensure this value is greater than 0."]
            elif name != "hang_seconds" and not 0 <= value <= 1:
                errors[name] = ["Ensure this value is between 0 and 1."]
            else:
                merged[name] = float(value)
        if not errors and sum(merged[name] for name in self.PROBABILITIES) > 1:
            errors["fault_500"] = ["fault_500 + fault_hang + fault_lost must not exceed 1."]
        if not errors:
            self.settings = merged
        return errors

    def draw(self, method: str) -> str | None:
        """``"500"``, ``"hang"``, ``"lost"`` or None for one request."""
        if self.settings["methods"] and method not in self.settings["methods"]:
            return None
        roll = self._random.random()
        for name in self.PROBABILITIES:
            if roll < self.settings[name]:
                return name.removeprefix("fault_")
            roll -= self.settings[name]
        return None


def _database(state: Path, auth: str) -> Any:
    """Octavia's app on a fresh SQLite database in ``state``: its tables made, its lookups seeded."""
    from octavia.api import app as octavia_app
    from octavia.common import constants
    from octavia.db import api as db_api
    from octavia.db import base_models, models
    from oslo_config import cfg

    database = state / "octavia.sqlite"
    database.unlink(missing_ok=True)
    config = state / "octavia.conf"
    strategy = "keystone" if "keystone_authtoken" in auth else "noauth"
    config.write_text(CONFIG.format(database=database, auth_strategy=strategy, auth=auth))
    app = octavia_app.setup_app(argv=["octavia-api", "--config-file", str(config)])
    cfg.CONF.set_override("pool_timeout", None, group="database")  # SQLAlchemy refuses it for SQLite
    engine = db_api.get_engine()
    base_models.BASE.metadata.create_all(engine)
    session = db_api.get_session()
    with session.begin():
        for names, model in LOOKUPS:
            for name in getattr(constants, names):
                session.add(getattr(models, model)(name=name))
    return app, engine


class Provider:
    """The provider's part: completes what Octavia's API left ``PENDING_*``, after a latency."""

    def __init__(self, engine: Any, lock: threading.Lock, stats: Stats, latency: float, build: float) -> None:
        self._engine = engine
        self._lock = lock
        self._stats = stats
        self._latency = latency
        self._build = build
        self._seen: dict[tuple[str, str], float] = {}  # (load balancer, its PENDING_* status) → since

    def run(self) -> None:
        while True:
            time.sleep(TICK)
            try:
                with self._lock:
                    self._tick()
            except Exception:
                logger.exception("the status task failed; it looks again")

    def _tick(self) -> None:
        from sqlalchemy import text

        now = time.monotonic()
        with self._engine.begin() as db:
            pending = db.execute(
                text(
                    "SELECT id, provisioning_status FROM load_balancer "
                    "WHERE provisioning_status LIKE 'PENDING_%'"
                )
            ).all()
            current = {(lb, status) for lb, status in pending}
            self._seen = {key: since for key, since in self._seen.items() if key in current}
            for lb, status in pending:
                since = self._seen.setdefault((lb, status), now)
                wait = self._build if status == "PENDING_CREATE" else self._latency
                if now - since >= wait:
                    self._complete(db, lb, status)
                    del self._seen[(lb, status)]
                    self._stats.completed += 1

    @staticmethod
    def _complete(db: Any, lb: str, status: str) -> None:
        from sqlalchemy import text

        def ids(sql: str) -> list[str]:
            return [row[0] for row in db.execute(text(sql), {"lb": lb}).all()]

        pools = ids("SELECT id FROM pool WHERE load_balancer_id = :lb")
        listeners = ids("SELECT id FROM listener WHERE load_balancer_id = :lb")
        if status == "PENDING_DELETE":  # the load balancer itself, and with it (cascade) its tree
            _remove(db, "listener", listeners)
            _remove(db, "pool", pools)
        else:
            for table, parent, within in (
                ("member", "pool_id", pools),
                ("health_monitor", "pool_id", pools),
                ("listener", "id", listeners),
                ("pool", "id", pools),
            ):
                _remove(db, table, _pending(db, table, parent, within, "= 'PENDING_DELETE'"))
        pools = ids("SELECT id FROM pool WHERE load_balancer_id = :lb")
        listeners = ids("SELECT id FROM listener WHERE load_balancer_id = :lb")
        for table, parent, within in (
            ("member", "pool_id", pools),
            ("health_monitor", "pool_id", pools),
            ("listener", "id", listeners),
            ("pool", "id", pools),
        ):
            done = _pending(db, table, parent, within, "LIKE 'PENDING_%'")
            _set(db, table, done, "provisioning_status = 'ACTIVE', operating_status = 'ONLINE'")
        if status == "PENDING_DELETE":
            final = "provisioning_status = 'DELETED', operating_status = 'OFFLINE'"
        else:
            final = "provisioning_status = 'ACTIVE', operating_status = 'ONLINE'"
        _set(db, "load_balancer", [lb], final)
        db.execute(
            text(
                "DELETE FROM tags WHERE resource_id NOT IN (SELECT id FROM load_balancer UNION SELECT id "
                "FROM listener UNION SELECT id FROM pool UNION SELECT id FROM member UNION SELECT id FROM "
                "health_monitor)"
            )
        )


def _pending(db: Any, table: str, column: str, within: list[str], status: str) -> list[str]:
    """IDs of ``table``'s rows whose ``column`` is in ``within`` and whose provisioning status matches."""
    from sqlalchemy import bindparam, text

    if not within:
        return []
    query = text(f"SELECT id FROM {table} WHERE {column} IN :within AND provisioning_status {status}")
    found = db.execute(query.bindparams(bindparam("within", expanding=True)), {"within": within})
    return [row[0] for row in found]


def _set(db: Any, table: str, ids: list[str], assignments: str) -> None:
    from sqlalchemy import bindparam, text

    if ids:
        query = text(f"UPDATE {table} SET {assignments} WHERE id IN :ids")
        db.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids})


def _remove(db: Any, table: str, ids: list[str]) -> None:
    """Delete rows of ``table`` as Octavia's own flows do: what refers to them goes first — deleted when
    its reference is required (a pool's members), set to NULL when it is optional (a listener's default
    pool) — found from Octavia's own foreign keys, so no table is forgotten."""
    from octavia.db import base_models
    from sqlalchemy import bindparam, text

    if not ids:
        return
    for other in base_models.BASE.metadata.sorted_tables:
        for key in other.foreign_keys:
            if key.column.table.name != table or key.column.name != "id":
                continue
            column = key.parent
            if column.nullable and other.name != table:
                query = text(f"UPDATE {other.name} SET {column.name} = NULL WHERE {column.name} IN :ids")
                db.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids})
            else:
                query = text(f"SELECT id FROM {other.name} WHERE {column.name} IN :ids")
                if "id" in other.columns:
                    found = db.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids}).all()
                    _remove(db, other.name, [row[0] for row in found])
                else:
                    query = text(f"DELETE FROM {other.name} WHERE {column.name} IN :ids")
                    db.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids})
    query = text(f"DELETE FROM {table} WHERE id IN :ids")
    db.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": ids})


def _live_objects(engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    counts = {}
    with engine.connect() as db:
        counts["load_balancers"] = db.execute(
            text("SELECT count(*) FROM load_balancer WHERE provisioning_status != 'DELETED'")
        ).scalar_one()
        for table, name in (
            ("pool", "pools"),
            ("member", "members"),
            ("listener", "listeners"),
            ("health_monitor", "health_monitors"),
        ):
            counts[name] = db.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    return counts


def _served(app: Any, engine: Any, lock: threading.Lock, stats: Stats, faults: Faults) -> Any:
    """Octavia's app, one request at a time, counted, journaled, with faults injected as set;
    ``/debug/stats``, ``/debug/log`` and ``/debug/faults`` besides."""

    def answer(start_response: Any, status: str, body: Any) -> list[bytes]:
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def debug(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path, method = environ["PATH_INFO"], environ.get("REQUEST_METHOD", "GET")
        with lock:
            if path == "/debug/stats":
                return answer(
                    start_response,
                    "200 OK",
                    {
                        "requests": stats.requests,
                        "mutations": stats.mutations,
                        "conflicts": stats.conflicts,
                        "by_status": dict(stats.by_status),
                        "completed": stats.completed,
                        "faults": dict(stats.faults),
                        "objects": _live_objects(engine),
                    },
                )
            if path == "/debug/log":
                return answer(start_response, "200 OK", list(stats.log))
            if path == "/debug/faults" and method == "PUT":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                try:
                    fields = json.loads(environ["wsgi.input"].read(length) or b"null")
                except ValueError:
                    fields = None
                errors = faults.configure(fields)
                if errors:
                    return answer(start_response, "400 Bad Request", errors)
                logger.info("faults set: %s", faults.settings)
            if path == "/debug/faults":
                return answer(start_response, "200 OK", faults.settings)
        return answer(start_response, "404 Not Found", {"detail": f"no debug endpoint {path}"})

    def octavia(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """One request through Octavia, inside the lock, counted and journaled."""
        method = environ.get("REQUEST_METHOD", "GET")
        seen: list[str] = []

        def counted(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.append(status)
            stats.requests += 1
            stats.by_status[status.split()[0]] += 1
            if method in MUTATIONS:
                stats.mutations += 1
                if status.startswith("409"):
                    stats.conflicts += 1
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        with lock:
            start = time.monotonic()
            body = list(app(environ, counted))  # the whole answer inside the lock
            if method in MUTATIONS and seen:
                stats.record(method, environ.get("PATH_INFO", ""), seen[0], b"".join(body), start)
            return body

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/debug/"):
            return debug(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        with lock:
            fault = faults.draw(method) if environ.get("PATH_INFO", "").startswith("/v2") else None
            hang = faults.settings["hang_seconds"]
            if fault:
                stats.faults[fault] += 1
        if fault == "500":
            return answer(start_response, "500 Internal Server Error", {"faultstring": "injected fault"})
        if fault == "hang":
            time.sleep(hang)  # this request's own thread; bounded
            return answer(start_response, "504 Gateway Timeout", {"faultstring": "injected fault: hung"})
        if fault == "lost":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            later = {**environ, "wsgi.input": io.BytesIO(environ["wsgi.input"].read(length))}
            threading.Thread(target=octavia, args=(later, lambda *_: None), daemon=True).start()
            return answer(start_response, "504 Gateway Timeout", {"faultstring": "injected fault: lost"})
        return octavia(environ, start_response)

    return serve


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9876)
    parser.add_argument("--state", type=Path, required=True, help="folder for the database and config")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds until a change is ACTIVE")
    parser.add_argument("--lb-ready-delay", type=float, default=0.5, help="seconds until a new LB is ACTIVE")
    parser.add_argument("--seed", type=int, help="the fault dice's seed (default: random)")
    parser.add_argument("--keystone", help="Keystone's v3 URL: validate tokens there (default: noauth)")
    parser.add_argument("--keystone-user", default="octavia", help="the service user validating tokens")
    parser.add_argument("--keystone-password", default="", help="its password (a test value)")
    parser.add_argument("--keystone-project", default="service", help="its project")
    parser.add_argument(
        "--token-cache-seconds", type=int, default=300, help="how long a token's validation is cached"
    )
    args = parser.parse_args(argv)
    auth = NOAUTH
    if args.keystone:
        auth = KEYSTONE.format(
            url=args.keystone,
            user=args.keystone_user,
            password=args.keystone_password,
            project=args.keystone_project,
            cache=args.token_cache_seconds,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.state.mkdir(parents=True, exist_ok=True)
    app, engine = _database(args.state, auth)
    lock, stats = threading.Lock(), Stats()
    provider = Provider(engine, lock, stats, args.latency, args.lb_ready_delay)
    threading.Thread(target=provider.run, name="provider", daemon=True).start()
    served = _served(app, engine, lock, stats, Faults(args.seed))
    server = make_server("127.0.0.1", args.port, served, server_class=_Threaded, handler_class=_Quiet)
    print(
        f"octavia (PyPI octavia, {'keystone' if args.keystone else 'noauth'}, no-op provider played by this "
        f"server): serving "
        f"http://127.0.0.1:{server.server_port}/v2 (latency {args.latency:g}s, lb ready after "
        f"{args.lb_ready_delay:g}s); stats at http://127.0.0.1:{server.server_port}/debug/stats",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):  # `make octavia` in the foreground: Ctrl-C ends it
        server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
