"""Seeded fault dice: which API request fails with a 500, and which one hangs."""

from __future__ import annotations

import random
from collections import Counter
from typing import Literal

Fault = Literal["500", "hang"]


class FaultInjector:
    """Draws one fault (or none) per API request; the same seed and request order give the same faults."""

    def __init__(self, fault_500: float, fault_hang: float, seed: int | None) -> None:
        self._fault_500 = fault_500
        self._fault_hang = fault_hang
        self._random = random.Random(seed)
        self.injected: Counter[Fault] = Counter()

    def draw(self) -> Fault | None:
        """``"500"``, ``"hang"`` or ``None`` for this request."""
        if not (self._fault_500 or self._fault_hang):
            return None
        roll = self._random.random()
        fault: Fault | None = None
        if roll < self._fault_500:
            fault = "500"
        elif roll < self._fault_500 + self._fault_hang:
            fault = "hang"
        if fault is not None:
            self.injected[fault] += 1
        return fault
