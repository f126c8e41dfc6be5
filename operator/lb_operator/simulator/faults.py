"""Seeded fault dice: which API request fails with a 500, which one hangs, and which one loses its answer
(a 504 at once, as a gateway answers when it gives up, while the request goes on and is applied after
it); settable while running.

Why settable: a test that needs one kind of request to fail (a PATCH that
hangs while reads still answer, 500s only on deletes) sets the faults at the
moment it needs them, through ``PUT /debug/faults`` or ``configure``,
instead of starting a simulator that fails from its first request on.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

from lb_operator.simulator.settings import Method
from lb_operator.simulator.validation import Errors, Field, FieldInvalid, Schema, validate

Fault = Literal["500", "hang", "lost"]
METHODS: tuple[Method, ...] = get_args(Method)


class FaultsInvalid(ValueError):
    """Fault settings that cannot be; ``errors`` is the answer's body, ``{field: [message]}``."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(f"invalid fault settings: {errors}")
        self.errors = errors


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldInvalid(["A valid number is required."])
    return float(value)


def probability(value: Any) -> float:
    """A number from 0 to 1."""
    number = _number(value)
    if number < 0:
        raise FieldInvalid(["Ensure this value is greater than or equal to 0."])
    if number > 1:
        raise FieldInvalid(["Ensure this value is less than or equal to 1."])
    return number


def seconds(value: Any) -> float:
    """A number of seconds above 0."""
    number = _number(value)
    if number <= 0:
        raise FieldInvalid(["Ensure this value is greater than 0."])
    return number


def methods(value: Any) -> frozenset[Method]:
    """A list of HTTP methods the faults apply to; empty means all of them."""
    if not isinstance(value, list | tuple | set | frozenset):
        raise FieldInvalid([f'Expected a list of items but got type "{type(value).__name__}".'])
    wrong = [f'"{item}" is not a valid choice.' for item in value if item not in METHODS]
    if wrong:
        raise FieldInvalid([*wrong, f"Choose among {', '.join(METHODS)}."])
    return frozenset(item for item in METHODS if item in value)


FAULTS: Schema = {
    "fault_500": Field(probability, updatable=True),
    "fault_hang": Field(probability, updatable=True),
    "fault_lost": Field(probability, updatable=True),
    "hang_seconds": Field(seconds, updatable=True),
    "methods": Field(methods, updatable=True),
}


class FaultInjector:
    """Draws one fault (or none) per API request; the same seed and request order give the same faults.

    Only requests whose method is in ``methods`` (all, when it is empty)
    roll the dice: the others neither fail nor use up a roll, so the faults
    of, say, the PATCHes repeat with the same seed however many reads run
    in between.
    """

    def __init__(
        self,
        fault_500: float = 0.0,
        fault_hang: float = 0.0,
        seed: int | None = None,
        *,
        fault_lost: float = 0.0,
        hang_seconds: float = 30.0,
        methods: Iterable[str] = (),
    ) -> None:
        self.fault_500 = 0.0
        self.fault_hang = 0.0
        self.fault_lost = 0.0
        self.hang_seconds = 30.0
        self.methods: frozenset[Method] = frozenset()
        self._random = random.Random(seed)
        self.injected: Counter[Fault] = Counter()
        self.configure(
            fault_500=fault_500,
            fault_hang=fault_hang,
            fault_lost=fault_lost,
            hang_seconds=hang_seconds,
            methods=list(methods),
        )

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Change the given settings (the others keep their values) and return them all.

        Takes what ``PUT /debug/faults`` takes: ``fault_500``, ``fault_hang``,
        ``fault_lost`` (probabilities, together at most 1), ``hang_seconds`` (> 0),
        ``methods`` (``GET``, ``POST``, ``PATCH``, ``DELETE``; empty = all).
        ``FaultsInvalid`` names every bad field, and then nothing changes.
        Requests already hanging keep their hang.
        """
        values, errors = validate(FAULTS, fields, partial=True)
        errors.update({name: ["Unknown field."] for name in fields if name not in FAULTS})
        if not errors:
            errors = self._check_sum(values)
        if errors:
            raise FaultsInvalid(errors)
        self.fault_500 = values.get("fault_500", self.fault_500)
        self.fault_hang = values.get("fault_hang", self.fault_hang)
        self.fault_lost = values.get("fault_lost", self.fault_lost)
        self.hang_seconds = values.get("hang_seconds", self.hang_seconds)
        self.methods = values.get("methods", self.methods)
        return self.settings()

    def _check_sum(self, values: Mapping[str, Any]) -> Errors:
        names = ("fault_500", "fault_hang", "fault_lost")
        given = [values.get(name, getattr(self, name)) for name in names]
        if sum(given) <= 1:
            return {}
        message = f"{' + '.join(names)} must not exceed 1, got {' + '.join(map(str, given))}."
        return {name: [message] for name in names if name in values}

    def settings(self) -> dict[str, Any]:
        """The current settings, as ``GET /debug/faults`` answers them."""
        return {
            "fault_500": self.fault_500,
            "fault_hang": self.fault_hang,
            "fault_lost": self.fault_lost,
            "hang_seconds": self.hang_seconds,
            "methods": [method for method in METHODS if method in self.methods],
        }

    def draw(self, method: str) -> Fault | None:
        """``"500"``, ``"hang"``, ``"lost"`` or ``None`` for a request with this HTTP ``method``."""
        if not (self.fault_500 or self.fault_hang or self.fault_lost):
            return None
        if self.methods and method not in self.methods:
            return None
        roll = self._random.random()
        fault: Fault | None = None
        if roll < self.fault_500:
            fault = "500"
        elif roll < self.fault_500 + self.fault_hang:
            fault = "hang"
        elif roll < self.fault_500 + self.fault_hang + self.fault_lost:
            fault = "lost"
        if fault is not None:
            self.injected[fault] += 1
        return fault
