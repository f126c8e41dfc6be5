"""A stand-in operator replica for the multi-process mutex tests: a real OS process.

Run as ``python worker.py CONFIG_JSON``. It appends one JSON line per event
to the shared log named in the config, stamped with ``time.monotonic()``,
which on Linux is one clock for every process on the machine, so the test
can order events across processes.

Modes:
- ``sections``: ``tasks`` tasks each run ``sections`` critical sections,
  cycling over ``keys``; one ``section`` line per section.
- ``hold``: take ``keys[0]``, then ``check()`` and log a ``write`` every
  ``write_every`` seconds until stopped; SIGUSR1 cancels the guarded task.
- ``wait``: wait for ``keys[0]`` (log ``waiting`` once the wait behind another
  holder has begun: the lock's wait hook), log ``acquired``, release, exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from kubernetes.aio import client, config

from lb_operator.mutex import HoldLost, LeaseMutex, MutexSettings, Waiting


class Log:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, **fields: Any) -> None:
        # One write() of a short line on an O_APPEND fd: lines of processes never interleave.
        line = json.dumps({"event": event, "pid": os.getpid(), "t": time.monotonic(), **fields}) + "\n"
        os.write(self._fd, line.encode())


async def sections(mutex: LeaseMutex, cfg: dict[str, Any], log: Log) -> None:
    loop = asyncio.get_running_loop()
    keys: list[str] = cfg["keys"]

    async def one_task(task: int) -> None:
        for number in range(cfg["sections"]):
            key = keys[(task + number) % len(keys)]
            async with mutex.hold(key, deadline=loop.time() + 120) as held:
                start = time.monotonic()
                held.check()
                await asyncio.sleep(cfg.get("work", 0.002))
                held.check()
                end = time.monotonic()
                log.write("section", key=key, token=held.fencing_token, start=start, end=end, task=task)

    await asyncio.gather(*(one_task(task) for task in range(cfg["tasks"])))


async def hold(mutex: LeaseMutex, cfg: dict[str, Any], log: Log) -> None:
    loop = asyncio.get_running_loop()
    guarded = asyncio.current_task()
    assert guarded is not None
    loop.add_signal_handler(signal.SIGUSR1, lambda: (log.write("cancel"), guarded.cancel()))
    try:
        async with mutex.hold(cfg["keys"][0], deadline=loop.time() + 60) as held:
            log.write("acquired", token=held.fencing_token, transitions=held.transitions)
            while True:
                held.check()
                log.write("write", token=held.fencing_token)
                await asyncio.sleep(cfg.get("write_every", 0.05))
    except HoldLost as error:
        log.write("stopped", reason="HoldLost", detail=str(error))
    except asyncio.CancelledError:
        log.write("released")


async def wait(mutex: LeaseMutex, cfg: dict[str, Any], log: Log) -> None:
    loop = asyncio.get_running_loop()

    async def waiting(told: Waiting) -> None:
        log.write("waiting", holder=told.holder)

    async with mutex.hold(cfg["keys"][0], deadline=loop.time() + 60, on_wait=waiting) as held:
        log.write("acquired", token=held.fencing_token, transitions=held.transitions)


async def main(cfg: dict[str, Any]) -> None:
    log = Log(cfg["log"])
    configuration = client.Configuration()
    await config.load_kube_config(config_file=cfg["kubeconfig"], client_configuration=configuration)
    settings = MutexSettings(**cfg.get("settings", {}))
    async with (
        client.ApiClient(configuration) as api,
        LeaseMutex(api, cfg["namespace"], cfg["identity"], settings) as mutex,
    ):
        log.write("started", identity=mutex.identity)
        await {"sections": sections, "hold": hold, "wait": wait}[cfg["mode"]](mutex, cfg, log)
        log.write("done", requests=dict(mutex.api.ledger.requests))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
