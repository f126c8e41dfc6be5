"""The HTTP face of the simulator: cloudscale's v1 load-balancer paths, payloads, status codes and errors.

- ``GET`` a collection (``?tag:key=value`` filters) → 200 + list; ``GET`` one → 200.
- ``POST`` → 201 + the object; ``PATCH`` → 204; ``DELETE`` → 204.
- Invalid body → 400 ``{field: [messages]}``; unknown object → 404 ``{"detail": ...}``;
  a change while another one holds the load balancer → 409 ``{"detail": ...}``.
- A load balancer reads ``status: "changing"`` while any change under it is in flight.
- ``/debug/stats``, ``/debug/log`` and ``/debug/faults`` are the simulator's own (not cloudscale's).

Middlewares, outermost first: errors as JSON, bearer token, fault injection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lb_operator.simulator.faults import FaultsInvalid
from lb_operator.simulator.gate import Change, Overlap
from lb_operator.simulator.store import PATHS, Kind, new_uuid
from lb_operator.simulator.validation import (
    HEALTH_MONITOR,
    LISTENER,
    LOAD_BALANCER,
    MEMBER,
    POOL,
    Schema,
    check_health_monitor,
    validate,
)

if TYPE_CHECKING:
    from lb_operator.simulator.server import Simulator

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SCHEMAS: dict[Kind, Schema] = {
    "load_balancer": LOAD_BALANCER,
    "pool": POOL,
    "member": MEMBER,
    "listener": LISTENER,
    "health_monitor": HEALTH_MONITOR,
}
UUID_PATTERN = "{uuid:[0-9a-fA-F-]{36}}"
MEMBERS_PATH = "load-balancers/pools/{pool:[0-9a-fA-F-]{36}}/members"
NOT_FOUND = {"detail": "Not found."}


class Refusal(Exception):
    """An answer other than success, raised from anywhere in a handler and sent by a middleware."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON, like the API's (aiohttp's own 404/405 are text otherwise)."""
    try:
        return await handler(request)
    except Refusal as refusal:
        return web.json_response(refusal.body, status=refusal.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        details = {404: "Not found.", 405: f'Method "{request.method}" not allowed.'}
        detail = details.get(exc.status, exc.reason)
        return web.json_response({"detail": detail}, status=exc.status)


class SimulatedAPI:
    """Handlers for the five kinds; all state lives in the ``Simulator`` they serve."""

    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator
        self.store = simulator.store
        self.gate = simulator.gate
        self.settings = simulator.settings

    def application(self) -> web.Application:
        """The aiohttp application with every route and middleware."""
        app = web.Application(middlewares=[errors_as_json, self.authenticate, self.inject_faults])
        for kind in ("pool", "listener", "health_monitor", "load_balancer"):
            # Fixed segments (`pools`) are registered before `{uuid}` so they win.
            collection = f"/v1/{PATHS[kind]}"
            app.router.add_get(collection, self._list(kind))
            app.router.add_post(collection, self._create(kind))
        members = f"/v1/{MEMBERS_PATH}"
        app.router.add_get(members, self._list("member"))
        app.router.add_post(members, self._create("member"))
        single: list[tuple[Kind, str]] = [*PATHS.items(), ("member", MEMBERS_PATH)]
        for kind, path in single:
            one = f"/v1/{path}/{UUID_PATTERN}"
            app.router.add_get(one, self._get(kind))
            app.router.add_patch(one, self._update(kind))
            app.router.add_delete(one, self._delete(kind))
        app.router.add_get("/debug/stats", self.stats)
        app.router.add_get("/debug/log", self.log)
        app.router.add_get("/debug/faults", self.faults)
        app.router.add_put("/debug/faults", self.set_faults)
        return app

    # --- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """When a token is configured, every request must carry ``Authorization: Bearer <token>``."""
        token = self.settings.token
        if token is not None:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if not header:
                raise Refusal(401, {"detail": "Authentication credentials were not provided."})
            expected = token.get_secret_value().encode()
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                raise Refusal(401, {"detail": "Invalid token."})
        return await handler(request)

    @web.middleware
    async def inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count API requests, and fail or hang some of them as the fault settings say.

        Only ``/v1/`` requests: ``/debug/faults`` must answer even when every request fails.
        """
        if not request.path.startswith("/v1/"):
            return await handler(request)
        self.sim.requests += 1
        faults = self.sim.faults
        fault, hang_seconds = faults.draw(request.method), faults.hang_seconds
        self.sim.notify()
        if fault == "500":
            raise Refusal(500, {"detail": "Internal server error (injected fault)."})
        if fault == "hang":
            # Bounded, and cut short when the simulator stops, so shutdown never waits for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sim.stopping.wait(), hang_seconds)
            raise Refusal(504, {"detail": "Gateway timeout (injected fault: the request hung)."})
        if fault == "lost":
            # A gateway gave up waiting: the client gets a 504 at once, while the request goes on and is
            # applied after it (a creation shows up only later). The body is read first: it stays cached.
            await request.read()
            self.sim.finish_unanswered(handler(request), f"unanswered {request.method} {request.path}")
            raise Refusal(504, {"detail": "Gateway timeout (injected fault: the answer was lost)."})
        return await handler(request)

    # --- reading -----------------------------------------------------------------------------

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}/v1"

    def _find(self, kind: Kind, request: web.Request) -> dict[str, Any]:
        record = self.store.get(kind, request.match_info["uuid"].lower())
        if record is None or (kind == "member" and record["pool"] != request.match_info["pool"].lower()):
            raise Refusal(404, NOT_FOUND)
        return record

    def _pool_in_path(self, request: web.Request) -> str:
        pool = request.match_info["pool"].lower()
        if self.store.get("pool", pool) is None:
            raise Refusal(404, NOT_FOUND)
        return pool

    def _render(self, base: str, kind: Kind, record: Mapping[str, Any]) -> dict[str, Any]:
        """The answer for ``record``; a load balancer reads ``changing`` while any change holds it.

        cloudscale shows a load balancer as ``changing`` while it applies a
        change to it or to anything under it. Only the build's ``changing`` is
        stored; this one is added on the way out, so it never reaches the
        state file.
        """
        body = self.store.render(base, kind, record)
        if kind == "load_balancer" and self.gate.busy(record["uuid"]):
            body["status"] = "changing"
        return body

    def _list(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            pool = self._pool_in_path(request) if kind == "member" else None
            tags = {key[4:]: value for key, value in request.query.items() if key.startswith("tag:")}
            base = self._base(request)
            found = [self._render(base, kind, record) for record in self.store.find(kind, tags, pool)]
            return web.json_response(found)

        return handler

    def _get(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(self._render(self._base(request), kind, self._find(kind, request)))

        return handler

    async def stats(self, request: web.Request) -> web.StreamResponse:
        """``GET /debug/stats``: mutations, overlaps (also per load balancer), in flight, object counts."""
        return web.json_response(self.sim.stats())

    async def log(self, request: web.Request) -> web.StreamResponse:
        """``GET /debug/log``: every finished or rejected change, oldest first."""
        return web.json_response([change.as_dict() for change in self.gate.log])

    async def faults(self, request: web.Request) -> web.StreamResponse:
        """``GET /debug/faults``: the fault settings in force."""
        return web.json_response(self.sim.faults.settings())

    async def set_faults(self, request: web.Request) -> web.StreamResponse:
        """``PUT /debug/faults``: change the given fault settings, keep the others; 200 + all of them.

        Body: ``{"fault_500", "fault_hang", "fault_lost", "hang_seconds", "methods"}``, all
        optional. Invalid values → 400 ``{field: [messages]}`` and nothing changes.
        """
        body = await self._body(request)
        if not isinstance(body, dict):
            raise Refusal(400, {"non_field_errors": ["Expected a JSON object of fault settings."]})
        try:
            settings = self.sim.faults.configure(**body)
        except FaultsInvalid as invalid:
            raise Refusal(400, invalid.errors) from None
        logger.info("faults set: %s", settings)
        return web.json_response(settings)

    # --- changing ----------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Refusal(400, {"detail": f"JSON parse error - {exc}"}) from None

    async def _change(
        self, change: Change, apply: Callable[[], tuple[web.StreamResponse, bool]]
    ) -> web.StreamResponse:
        """Run ``apply`` as one change holding the load balancer for ``latency`` seconds.

        ``apply`` runs after the wait and re-checks what it needs (the world
        may have changed while this change queued). It returns the answer and
        whether the change keeps holding the load balancer (a new one, until
        it is running).
        """
        try:
            await self.gate.enter(change)
        except Overlap as overlap:
            logger.info("overlap: %s", overlap)
            raise Refusal(
                409,
                {
                    "detail": f"{overlap}; only one change per load balancer can be applied at a time, "
                    "retry when it is done."
                },
            ) from None
        if self.settings.mode == "async":
            return await self._change_answered_first(change, apply)
        outcome = "aborted"
        keeps_holding = False
        try:
            await asyncio.sleep(self.settings.latency)
            response, keeps_holding = apply()
            await self.sim.save()
            outcome = "ok"
            return response
        except Refusal as refusal:
            outcome = str(refusal.status)
            raise
        finally:
            if keeps_holding:
                self.sim.provision(change)
            else:
                self.gate.leave(change, outcome)

    async def _change_answered_first(
        self, change: Change, apply: Callable[[], tuple[web.StreamResponse, bool]]
    ) -> web.StreamResponse:
        """``async`` mode: apply and answer now; the load balancer reads ``changing`` for ``latency``."""
        try:
            response, keeps_holding = apply()
            await self.sim.save()
        except BaseException as error:
            self.gate.leave(change, str(error.status) if isinstance(error, Refusal) else "aborted")
            raise
        if keeps_holding:
            self.sim.provision(change)  # a new load balancer: busy until it is running
        else:
            self.sim.hold(change)
        return response

    def _arrival(self, load_balancer: str, kind: Kind, op: str, uuid: str) -> Change:
        return Change(load_balancer, kind, op, uuid, arrived=asyncio.get_running_loop().time())

    @staticmethod
    def _cross_check(kind: Kind, values: dict[str, Any]) -> None:
        """Rules across fields, on the values the object would have after the request."""
        if kind == "health_monitor":
            errors = check_health_monitor(values)
            if errors:
                raise Refusal(400, errors)

    def _create(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            pool = self._pool_in_path(request) if kind == "member" else None
            values, errors = validate(SCHEMAS[kind], await self._body(request), partial=False)
            if errors:
                raise Refusal(400, errors)
            self._cross_check(kind, values)

            def check() -> None:
                if kind == "member":
                    self._pool_in_path(request)
                errors = self.store.check_create(kind, values, pool)
                if errors:
                    raise Refusal(400, errors)

            check()
            uuid = new_uuid()
            if kind == "load_balancer":
                load_balancer = uuid
            elif kind == "pool":
                load_balancer = values["load_balancer"]
            else:
                parent_pool = pool if kind == "member" and pool else str(values["pool"])
                load_balancer = self.store.objects["pool"][parent_pool]["load_balancer"]
            base = self._base(request)

            change = self._arrival(load_balancer, kind, "create", uuid)

            def apply() -> tuple[web.StreamResponse, bool]:
                check()
                record = self.store.create(kind, values, uuid, pool)
                change.tags = dict(record.get("tags") or {})
                body = self._render(base, kind, record)
                return web.json_response(body, status=201), kind == "load_balancer"

            return await self._change(change, apply)

        return handler

    def _update(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            record = self._find(kind, request)
            values, errors = validate(SCHEMAS[kind], await self._body(request), partial=True)
            if errors:
                raise Refusal(400, errors)
            uuid = record["uuid"]

            def check() -> None:
                current = self._find(kind, request)
                self._cross_check(kind, self.store.merged(kind, uuid, values))
                errors = self.store.check_update(kind, current, values)
                if errors:
                    raise Refusal(400, errors)

            check()

            change = self._arrival(self.store.load_balancer_of(kind, record), kind, "update", uuid)

            def apply() -> tuple[web.StreamResponse, bool]:
                check()
                self.store.update(kind, uuid, values)
                change.tags = dict((self.store.get(kind, uuid) or {}).get("tags") or {})
                return web.Response(status=204), False

            return await self._change(change, apply)

        return handler

    def _delete(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            record = self._find(kind, request)
            uuid = record["uuid"]

            def apply() -> tuple[web.StreamResponse, bool]:
                self._find(kind, request)
                self.store.delete(kind, uuid)
                return web.Response(status=204), False

            change = self._arrival(self.store.load_balancer_of(kind, record), kind, "delete", uuid)
            return await self._change(change, apply)

        return handler
