"""The JSON file that lets a restarted simulator keep its objects.

Writes go through a thread (no blocking file I/O on the event loop) and
replace the file atomically, so a crash leaves the old state or the new one,
never half of each. A sequence number keeps a slow older write from landing
after a newer one.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any


class StateFile:
    """Load once at start, save after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sequence = 0
        self._written = 0
        self._write_lock = threading.Lock()

    def load(self) -> Any:
        """The saved data, or ``None`` if there is no file yet. Blocking: use ``asyncio.to_thread``."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"state file {self.path} is not JSON ({exc}); delete it") from None

    async def save(self, data: Any) -> None:
        """Write ``data`` (serialized now, on the loop, so later changes cannot leak into it)."""
        self._sequence += 1
        text = json.dumps(data, indent=1, sort_keys=True)
        await asyncio.to_thread(self._write, self._sequence, text)

    def _write(self, sequence: int, text: str) -> None:
        with self._write_lock:
            if sequence < self._written:
                return  # a newer state is on disk already
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
            self._written = sequence
