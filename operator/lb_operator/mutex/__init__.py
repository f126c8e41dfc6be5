"""A cross-process mutex on Kubernetes Lease objects: generic, it knows nothing of load balancers.

See ``docs/mutex.md`` for what it guarantees and how to tune it.
"""

from lb_operator.mutex.errors import HoldLost, HoldReleased, LeaseKeyCollision, LockTimeout, MutexError
from lb_operator.mutex.hold import Hold
from lb_operator.mutex.lease_mutex import LeaseMutex, WaitHook, Waiting
from lb_operator.mutex.records import KEY_ANNOTATION, LOCK_LABEL, lease_name
from lb_operator.mutex.settings import MutexSettings

__all__ = [
    "KEY_ANNOTATION",
    "LOCK_LABEL",
    "Hold",
    "HoldLost",
    "HoldReleased",
    "LeaseKeyCollision",
    "LeaseMutex",
    "LockTimeout",
    "MutexError",
    "MutexSettings",
    "WaitHook",
    "Waiting",
    "lease_name",
]
