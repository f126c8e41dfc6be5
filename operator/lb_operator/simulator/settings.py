"""Everything the simulator can be told, checked once at construction."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Mode = Literal["reject", "serialize", "queue", "async"]
"""``queue`` is another name for ``serialize``."""
Method = Literal["GET", "POST", "PATCH", "DELETE"]


class SimulatorSettings(BaseModel):
    """How the simulated cloud behaves: where it listens, how slow it is, how it fails.

    ``mode`` decides what happens to a change that arrives while another
    change under the same load balancer is in flight: ``reject`` answers 409
    (like cloudscale/Octavia), ``serialize`` queues it (a cloud that is merely
    slow: "processes requests serially, per load balancer"). Either way it is
    counted as an overlap. ``async`` answers a change at once and keeps its
    load balancer ``changing`` for ``latency`` afterwards, rejecting overlaps
    with 409 meanwhile (the real API answers before it has applied a change).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field(default="127.0.0.1", description="Address to listen on. Default loopback only.")
    port: int = Field(default=0, ge=0, le=65535, description="TCP port; 0 (the default) picks a free one.")
    latency: float = Field(
        default=0.2,
        ge=0,
        description="Seconds each change (create, update, delete) takes while it holds its load balancer.",
    )
    lb_ready_delay: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a new load balancer stays `changing` (and busy) before it is `running`.",
    )
    mode: Mode = Field(
        default="reject",
        description="`reject` (409) or `serialize` (queue) for overlapping changes; `async`: answer at "
        "once, `changing` for `latency` after the answer, overlaps 409.",
    )
    state_file: Path | None = Field(
        default=None,
        description="JSON file the state is saved to after every change and loaded from at start. "
        "Default: none (state lives in memory only).",
    )
    fault_500: float = Field(
        default=0.0, ge=0, le=1, description="Probability (0..1) that an API request is answered 500."
    )
    fault_hang: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability (0..1) that an API request hangs (then 504 after hang_seconds).",
    )
    fault_lost: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability (0..1) that an API request is answered 504 at once while it goes on and is "
        "applied after the answer (a gateway that gave up on a slow backend): the client cannot tell.",
    )
    hang_seconds: float = Field(
        default=30.0, gt=0, description="Seconds a hung request is held open before its 504."
    )
    fault_methods: tuple[Method, ...] = Field(
        default=(),
        description="HTTP methods of the API requests the faults apply to. Default: none named = all. "
        "All fault settings can be changed while running (`PUT /debug/faults`).",
    )
    seed: int | None = Field(
        default=None, description="Seed of the fault dice: the same seed, the same faults. Default random."
    )
    token: SecretStr | None = Field(
        default=None, description="Bearer token every request must carry. Default: none required."
    )
    log_limit: int = Field(
        default=10_000, ge=1, description="Changes kept in the mutation log (`/debug/log`); oldest dropped."
    )

    @model_validator(mode="after")
    def _faults_are_a_probability(self) -> SimulatorSettings:
        if self.fault_500 + self.fault_hang + self.fault_lost > 1:
            raise ValueError(
                "fault_500 + fault_hang + fault_lost must not exceed 1, got "
                f"{self.fault_500} + {self.fault_hang} + {self.fault_lost}"
            )
        return self
