"""Prometheus metrics of the handlers, and the HTTP server that serves every metric of the process."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

RECONCILES = Counter(
    "lbop_reconciles",
    "Reconcile attempts by kind, trigger ('change': create/update/resume, 'resync': the drift check) and "
    "outcome: 'Ready', the reason it is not Ready yet (e.g. 'Provisioning'), or the reason it failed "
    "(e.g. 'ParentNotReady', 'Busy', 'DeadlineExceeded', 'CloudRejected', 'UnexpectedError').",
    ["kind", "trigger", "outcome"],
)

CHANGES_UNDER_WAY = Gauge(
    "lbop_changes_under_way",
    "Changes of this replica under way: queued behind the other changes of their tree, waiting for "
    "their parent, or at work (handlers.pending).",
)

CHANGES_OUTLIVING = Counter(
    "lbop_changes_outliving_handler",
    "Handler attempts that reached their deadline while their change went on in its place.",
)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve(host: str, port: int) -> web.AppRunner:
    """Serve ``/metrics`` on ``host:port`` until the returned runner is cleaned up."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logger.info("metrics at http://%s:%d/metrics", host, port)
    return runner
