"""What the sharding tests share: a wait with a deadline, and a LoadBalancer manifest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from lb_operator.api import GROUP, VERSION


async def until(what: str, check: Callable[[], bool], within: float = 20.0) -> None:
    """Wait until ``check()`` holds, looking every 20 ms; fail with ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.02)


def load_balancer(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LoadBalancer",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"zone": "lpg1"},
    }
