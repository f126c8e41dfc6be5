"""One exception hierarchy for the mutex; every message says what happened and what to do."""

from __future__ import annotations


class MutexError(Exception):
    """Base of every error the Lease mutex raises."""


class LockTimeout(MutexError):
    """The lock was not acquired before the caller's deadline.

    Carries the key, who held it when we gave up (``None`` if nobody could be
    seen, e.g. the API server was unreachable) and how long we waited.
    """

    def __init__(self, key: str, holder: str | None, waited: float, reason: str | None = None) -> None:
        self.key = key
        self.holder = holder
        self.waited = waited
        self.reason = reason
        who = f"held by {holder}" if holder else "holder unknown"
        why = f"; last error: {reason}" if reason else ""
        super().__init__(
            f"lock {key!r} not acquired within {waited:.2f}s ({who}{why}); retry later or raise the deadline"
        )


class HoldLost(MutexError):
    """The hold may have lapsed: renewals failed past the renew deadline, or another holder took the lease.

    Code guarded by the lock must stop at once: another replica may already
    be inside its critical section.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(
            f"hold on lock {key!r} lost: {reason}; the guarded work was stopped and must be retried"
        )


class HoldReleased(MutexError):
    """``check()`` was called on a hold whose ``async with`` block has exited: a bug in the caller.

    Not a ``HoldLost``: nothing went wrong with the lease, the guarded code
    simply runs outside the lock. Move the work inside the block.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"hold on lock {key!r} was already released; call check() and do the guarded work "
            "inside the `async with mutex.hold(...)` block"
        )


class LeaseKeyCollision(MutexError):
    """Two different keys mapped to one Lease name (the key annotation disagrees)."""
