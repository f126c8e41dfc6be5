"""Deletes lock Leases nobody has used for a while, so keys of deleted parents leave nothing behind.

Safe to run in every replica at once: a Lease is deleted only with a
resourceVersion precondition, so one that was acquired or renewed since we
looked is left alone, and keys this process holds or waits for are skipped.
Fencing tokens stay monotonic across a delete: they are resource versions,
which keep increasing when a later holder re-creates the Lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lb_operator.mutex import metrics
from lb_operator.mutex.leases import Conflict, LeaseCalls, Missing, Unavailable
from lb_operator.mutex.settings import MutexSettings
from lb_operator.mutex.watch import LeaseWatch

logger = logging.getLogger(__name__)


async def sweep_once(
    api: LeaseCalls, watch: LeaseWatch, settings: MutexSettings, is_busy: Callable[[str], bool]
) -> int:
    """Delete every lock Lease idle for ``sweep_idle_after``; return how many were deleted."""
    if not watch.synced:
        return 0  # only sweep from a complete, current view
    now = asyncio.get_running_loop().time()
    deleted = 0
    for name in watch.names():
        observed = watch.get(name)
        if observed is None or is_busy(name):
            continue
        record = observed.record
        idle_since = observed.seen_at if record.holder is None else observed.expires_at()
        if now - idle_since < settings.sweep_idle_after:
            continue
        try:
            await api.delete(name, record.resource_version, "sweep")
        except (Conflict, Missing):
            continue  # changed or gone meanwhile: not idle after all, or done by another replica
        watch.forget(name, deleted_at=record.resource_version)
        metrics.SWEPT.inc()
        deleted += 1
        logger.info("deleted idle lock lease %s (key %s)", name, record.key)
    return deleted


async def sweep_forever(
    api: LeaseCalls, watch: LeaseWatch, settings: MutexSettings, is_busy: Callable[[str], bool]
) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval)
        try:
            await sweep_once(api, watch, settings, is_busy)
        except Unavailable as error:
            logger.info("lease sweep skipped: %s", error)
