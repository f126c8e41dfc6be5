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
409 answers (the overlap oracle) and live objects per kind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socketserver
import sys
import threading
import time
from collections import Counter
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
"""
"""Keystone: keystonemiddleware validates each token with these service credentials; Octavia's default
policy then lets a project's ``member`` change its load balancers."""

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


def _served(app: Any, engine: Any, lock: threading.Lock, stats: Stats) -> Any:
    """Octavia's app, one request at a time, counted; ``/debug/stats`` besides."""

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/debug/stats":
            with lock:
                body = {
                    "requests": stats.requests,
                    "mutations": stats.mutations,
                    "conflicts": stats.conflicts,
                    "by_status": dict(stats.by_status),
                    "completed": stats.completed,
                    "objects": _live_objects(engine),
                }
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        method = environ.get("REQUEST_METHOD", "GET")

        def counted(status: str, headers: Any, exc_info: Any = None) -> Any:
            stats.requests += 1
            stats.by_status[status.split()[0]] += 1
            if method in MUTATIONS:
                stats.mutations += 1
                if status.startswith("409"):
                    stats.conflicts += 1
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        with lock:
            return list(app(environ, counted))  # the whole answer inside the lock

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
    parser.add_argument("--keystone", help="Keystone's v3 URL: validate tokens there (default: noauth)")
    parser.add_argument("--keystone-user", default="octavia", help="the service user validating tokens")
    parser.add_argument("--keystone-password", default="", help="its password (a test value)")
    parser.add_argument("--keystone-project", default="service", help="its project")
    args = parser.parse_args(argv)
    auth = NOAUTH
    if args.keystone:
        auth = KEYSTONE.format(
            url=args.keystone,
            user=args.keystone_user,
            password=args.keystone_password,
            project=args.keystone_project,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.state.mkdir(parents=True, exist_ok=True)
    app, engine = _database(args.state, auth)
    lock, stats = threading.Lock(), Stats()
    provider = Provider(engine, lock, stats, args.latency, args.lb_ready_delay)
    threading.Thread(target=provider.run, name="provider", daemon=True).start()
    served = _served(app, engine, lock, stats)
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
