"""Prometheus metrics of the Lease mutex, labelled by key kind (``lb/…`` → ``lb``).

Defined once per process: every ``LeaseMutex`` in it reports into them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

WAIT_SECONDS = Histogram(
    "lbop_mutex_wait_seconds",
    "Time from asking for a lock to holding it (or giving up).",
    ["kind"],
    buckets=_WAIT_BUCKETS,
)
HOLD_SECONDS = Histogram(
    "lbop_mutex_hold_seconds",
    "Time a lock was held, from acquisition to release.",
    ["kind"],
    buckets=_WAIT_BUCKETS,
)
ACQUISITIONS = Counter("lbop_mutex_acquisitions", "Locks acquired.", ["kind"])
TIMEOUTS = Counter("lbop_mutex_timeouts", "Waits that reached their deadline.", ["kind"])
LOST_HOLDS = Counter(
    "lbop_mutex_lost_holds", "Holds lost before release (renewal failed or lease taken).", ["kind"]
)
HANDOVERS = Counter(
    "lbop_mutex_handovers",
    "Acquisitions of a lease another holder had: 'released' it, left it to 'expire', or 'passed' it "
    "on from a task of this process without a write.",
    ["kind", "how"],
)
API_REQUESTS = Counter("lbop_mutex_api_requests", "Requests to the Lease API.", ["kind", "verb"])
WATCH_RESTARTS = Counter("lbop_mutex_watch_restarts", "Times the shared Lease watch was re-established.")
SWEPT = Counter("lbop_mutex_swept_leases", "Idle lock Leases deleted by the sweeper.")
