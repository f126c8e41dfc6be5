"""The simulator's life: start on a port, resume what a restart interrupted, serve, stop cleanly.

Tests run it in their own event loop::

    async with Simulator(SimulatorSettings(latency=0.05, lb_ready_delay=0.1)) as sim:
        client = CloudscaleClient(CloudscaleSettings(base_url=sim.url, token=...))
        ...
        await sim.wait_for(lambda stats: stats["in_flight"] == 0, within=5)

and ``lb-operator simulator`` runs it in the foreground (``run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

from aiohttp import web

from lb_operator.simulator.api import SimulatedAPI
from lb_operator.simulator.faults import FaultInjector
from lb_operator.simulator.gate import Change, ChangeGate
from lb_operator.simulator.settings import SimulatorSettings
from lb_operator.simulator.statefile import StateFile
from lb_operator.simulator.store import Store

logger = logging.getLogger(__name__)


class Simulator:
    """An in-process cloud load-balancer API server (cloudscale v1 paths) with one change per LB at a time."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings or SimulatorSettings()
        self.store = Store()
        self.gate = ChangeGate(self.settings.mode, self.settings.log_limit, on_change=self.notify)
        self.faults = FaultInjector(
            self.settings.fault_500,
            self.settings.fault_hang,
            self.settings.seed,
            fault_lost=self.settings.fault_lost,
            hang_seconds=self.settings.hang_seconds,
            methods=self.settings.fault_methods,
        )
        self.requests = 0
        self.stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._state_file = StateFile(self.settings.state_file) if self.settings.state_file else None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._provisioning: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Simulator {self._url or 'not started'} mode={self.settings.mode}>"

    @property
    def url(self) -> str:
        """The API's base URL, ``http://host:port/v1`` — what ``CloudscaleSettings.base_url`` takes."""
        if self._url is None:
            raise RuntimeError("the simulator is not started; use `async with Simulator()` or await start()")
        return self._url

    async def start(self) -> str:
        """Load the state file, listen, and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        if self._state_file is not None:
            data = await asyncio.to_thread(self._state_file.load)
            if data is not None:
                self.store.restore(data, str(self._state_file.path))
        runner = web.AppRunner(SimulatedAPI(self).application(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
        # Load balancers that were still being built when the last run stopped finish now.
        for record in list(self.store.find("load_balancer")):
            if record["status"] == "changing":
                now = asyncio.get_running_loop().time()
                change = Change(record["uuid"], "load_balancer", "provision", record["uuid"], arrived=now)
                await self.gate.enter(change)
                self.provision(change)
        return self._url

    async def stop(self) -> None:
        """Stop serving. Hung requests end at once; load balancers being built stay ``changing``."""
        self.stopping.set()
        tasks = list(self._provisioning)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def hold(self, change: Change) -> None:
        """``async`` mode: ``change`` was answered already; its load balancer stays busy for ``latency``."""
        self._in_background(self._release_later(change), f"apply {change.load_balancer}")

    def finish_unanswered(self, work: Awaitable[object], name: str) -> None:
        """A request whose answer was lost: it goes on being applied after the client got its 504."""
        self._in_background(_discarding(work), name)

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` until it ends or the simulator stops (``stop`` cancels it)."""
        task = asyncio.create_task(work, name=name)
        self._provisioning.add(task)
        task.add_done_callback(self._provisioning.discard)

    async def _release_later(self, change: Change) -> None:
        outcome = "aborted"
        try:
            await asyncio.sleep(self.settings.latency)
            outcome = "ok"
        finally:
            self.gate.leave(change, outcome)

    def provision(self, change: Change) -> None:
        """Take over a new load balancer: busy until it is ``running``, ``lb_ready_delay`` from now."""
        self._in_background(self._become_running(change), f"provision {change.load_balancer}")

    async def _become_running(self, change: Change) -> None:
        outcome = "aborted"
        try:
            await asyncio.sleep(self.settings.lb_ready_delay)
            if self.store.set_status(change.load_balancer, "running"):
                await self.save()
            outcome = "ok"
        except Exception:
            logger.exception("load balancer %s could not be made running", change.load_balancer)
        finally:
            self.gate.leave(change, outcome)

    async def save(self) -> None:
        """Write the state file, if there is one."""
        if self._state_file is not None:
            await self._state_file.save(self.store.snapshot())

    def stats(self) -> dict[str, Any]:
        """What ``/debug/stats`` answers."""
        return {
            **self.gate.stats(),
            "requests": self.requests,
            "faults": dict(self.faults.injected),
            "objects": self.store.counts(),
        }

    def log(self) -> list[dict[str, Any]]:
        """What ``/debug/log`` answers: the finished and rejected changes, oldest first."""
        return [change.as_dict() for change in self.gate.log]

    async def wait_for(self, condition: Callable[[dict[str, Any]], bool], within: float) -> dict[str, Any]:
        """Wait until ``condition(stats)`` holds and return those stats; ``TimeoutError`` after ``within`` s.

        Woken by every change of the counters, never by polling.
        """
        async with asyncio.timeout(within):
            while True:
                stats = self.stats()
                if condition(stats):
                    return stats
                await self._changed.wait()

    def notify(self) -> None:
        """Wake ``wait_for`` callers: a counter changed."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


async def serve(settings: SimulatorSettings, announce: Callable[[str], None] = print) -> None:
    """Run until SIGINT or SIGTERM; ``announce`` gets one line with the URL once it listens."""
    simulator = Simulator(settings)
    url = await simulator.start()
    auth = "a bearer token is required" if settings.token else "no token required"
    announce(
        f"lb-operator simulator: serving the cloudscale v1 API at {url} "
        f"(mode {settings.mode}, latency {settings.latency:g}s, lb ready after {settings.lb_ready_delay:g}s, "
        f"{auth}); stats at {url.removesuffix('/v1')}/debug/stats"
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await simulator.stop()


def run(settings: SimulatorSettings) -> int:
    """``lb-operator simulator``: serve in the foreground; the exit code."""
    asyncio.run(serve(settings, announce=lambda line: print(line, flush=True)))
    return 0


async def _discarding(work: Awaitable[object]) -> None:
    """Await ``work`` for its effect; its answer (or refusal) goes to nobody."""
    with contextlib.suppress(Exception):
        await work
