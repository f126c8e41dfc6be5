"""Timings of the Lease mutex, checked once so the algorithm never has to doubt them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MutexSettings(BaseModel):
    """How long a hold lasts without renewal, how often it is renewed, and the housekeeping.

    Invariant, checked at construction: ``lease_duration`` > ``renew_deadline``
    > ``renew_interval`` > 0. A holder gives up (``HoldLost``) at the renew
    deadline, while others may take over only after the full duration: the
    difference is the safety margin for clock-rate drift and scheduling delay.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lease_duration: int = Field(
        default=15,
        ge=1,
        description="Seconds: a lease not renewed for this long (by the observer's clock) is free.",
    )
    renew_deadline: float = Field(
        default=10.0,
        gt=0,
        description="Seconds: a holder that could not renew for this long treats the hold as lost.",
    )
    renew_interval: float = Field(
        default=5.0, gt=0, description="Seconds between renewals while a lock is held."
    )
    request_timeout: float = Field(default=5.0, gt=0, description="Seconds: upper bound of one API request.")
    retry_initial: float = Field(
        default=0.05,
        gt=0,
        description="Seconds: first back-off after an API error while acquiring; doubles each time.",
    )
    retry_max: float = Field(
        default=1.0, gt=0, description="Seconds: longest back-off between acquire attempts."
    )
    watch_timeout: int = Field(
        default=300,
        ge=10,
        description="Seconds: the server ends each watch after this long; it is then resumed.",
    )
    watch_backoff_max: float = Field(
        default=5.0, gt=0, description="Seconds: longest pause before re-establishing a watch."
    )
    watch_stall_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds: a write of ours not delivered back by the watch within this long means the "
        "stream stalled (half-open); it is cut and the cache listed again.",
    )
    release_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds: bound on releasing a lease on exit; past it the lease expires by itself.",
    )
    pass_within: float = Field(
        default=0.0,
        ge=0,
        description="Seconds after a process took a lease from the API server during which a task of "
        "that process that releases it passes it straight to the next task of the process waiting for "
        "the same key, with no write; past it, or with nobody waiting, the lease is released (written). "
        "0 (the default): every hold is released. It ends one run of passes; it does not make the lock "
        "fair across processes: a process whose queue stays busy may take the lease again from its own "
        "cache before another process has seen the release (as without passing).",
    )
    linger: float = Field(
        default=0.0,
        ge=0,
        description="Seconds (with pass_within) a lease released with no task of this process waiting, "
        "by a section that ended without an exception, is kept, unreleased, for a task that comes for "
        "the same key meanwhile: it takes it with no write. "
        "Never past the next renewal due (nothing renews a lease nobody holds) nor past pass_within; "
        "the lease is released (written) when it ends. 0 (the default): released at once.",
    )
    sweep_interval: float = Field(
        default=60.0, gt=0, description="Seconds between sweeps for idle lock Leases."
    )
    sweep_idle_after: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a lock Lease must stay free and unchanged before the sweeper deletes it.",
    )

    @model_validator(mode="after")
    def _timings_are_ordered(self) -> MutexSettings:
        if not self.lease_duration > self.renew_deadline > self.renew_interval:
            raise ValueError(
                "need lease_duration > renew_deadline > renew_interval, got "
                f"{self.lease_duration} > {self.renew_deadline} > {self.renew_interval}"
            )
        if self.retry_initial > self.retry_max:
            raise ValueError(f"need retry_initial <= retry_max, got {self.retry_initial} > {self.retry_max}")
        return self
