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

import json
import os
import time
from pathlib import Path

from lb_operator.reconcile.resources import Resource


class Journal:
    """Appends lines to ``path``; one short ``O_APPEND`` write each, so the lines of processes never mix.

    Written at once, in the event loop, as a log line is: a write of a
    hundred bytes to the page cache, with no await. So a run cannot be
    cancelled between its "start" and what follows, a process's lines land
    in the order they were recorded, and a write is journaled before its
    request is sent. (A hop to a writer thread per line cost a fleet's
    replicas about a tenth of their CPU, and each change under a lock waited
    for it: ``bench/README.md``.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def record(self, uid: str, event: str, **details: object) -> None:
        """Append a line: ``event`` (``start``, ``end``, ``write``) of the object ``uid``, now."""
        line = {"uid": uid, "event": event, "pid": os.getpid(), "t": time.monotonic(), **details}
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, (json.dumps(line) + "\n").encode())

    async def wrote(self, obj: Resource, what: str) -> None:
        """``obj`` is about to be written: ``what`` is ``cloud`` or ``status``."""
        self.record(obj.uid, "write", what=what, generation=obj.generation)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
