"""The handler journal (``LBOP_HANDLER_JOURNAL``): a JSON line per handler start and end, and per write.

A debugging aid, and the tests' witness: from the lines of every replica a
checker can tell whether two replicas ever acted on one object at once. A
handler that is merely running (frozen, or waiting for a lock) does not
act; one that writes does, so the writes are journaled: a cloud write when
it was decided (after the ownership proof, before the request: the cloud's
own overlap counter sees whether requests met), a status write once the API
server took it (one it refused, fenced on an old version, is no write — a
cut-off replica's attempt that never reached the server was counted as one).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lb_operator.reconcile.resources import Resource


class Journal:
    """Appends lines to ``path``; one short ``O_APPEND`` write each, so the lines of processes never mix.

    One writer thread: a process's lines land in the order they were recorded (with a thread per
    line, a run's "end" could overtake its "start").
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")

    async def record(self, uid: str, event: str, **details: object) -> None:
        line = {"uid": uid, "event": event, "pid": os.getpid(), "t": time.monotonic(), **details}
        loop = asyncio.get_running_loop()
        written = loop.run_in_executor(self._writer, self._append, json.dumps(line) + "\n")
        # Shielded: a run cancelled while its line waits for the writer still has it written (a
        # cancelled "start" with its "end" written would close another run of the object early).
        await asyncio.shield(written)

    async def wrote(self, obj: Resource, what: str) -> None:
        """``obj`` is about to be written: ``what`` is ``cloud`` or ``status``."""
        await self.record(obj.uid, "write", what=what, generation=obj.generation)

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
