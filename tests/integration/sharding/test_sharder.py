"""The sharder on the real API server: it works from the replica's mirror, and renewals cost nothing.

Before: a pass ran on every member Lease event (each renewal, about twice
a lease duration per member) and listed all five kinds in full each time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kubernetes.aio import client
from sharding_support import load_balancer, until

from lb_operator.api import ALL_KINDS, GROUP, VERSION
from lb_operator.mutex import LeaseMutex, MutexSettings, lease_name
from lb_operator.sharding import SHARD_LABEL
from lb_operator.sharding.members import MEMBER_PREFIX, Membership
from lb_operator.sharding.sharder import Sharder
from lb_operator.sharding.streams import Mirror
from lb_operator.testing import Cluster


async def test_renewals_cost_no_pass_a_join_does_and_the_view_costs_one_list_per_kind(
    crds: Cluster, api: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    settings = MutexSettings(lease_duration=3, renew_deadline=2, renew_interval=0.5, request_timeout=2)
    async with LeaseMutex(api, namespace, "me", settings) as mutex:
        membership = Membership(mutex, "me")
        membership.start()
        mirror = Mirror(objects, [namespace])
        mirror.start()
        sharder = Sharder(api, mutex, mirror)
        task = asyncio.create_task(sharder.run())
        try:
            for name in ("a", "b", "c"):
                await objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "loadbalancers", load_balancer(namespace, name)
                )

            async def labelled() -> set[str | None]:
                listing = await objects.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, "loadbalancers"
                )
                return {(item["metadata"].get("labels") or {}).get(SHARD_LABEL) for item in listing["items"]}

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while await labelled() != {"me"}:
                assert loop.time() < deadline, "the sharder did not assign the objects"
                await asyncio.sleep(0.05)
            member = lease_name(MEMBER_PREFIX + "me")
            versions: set[str] = set()

            def renewed(times: int) -> Callable[[], bool]:
                def check() -> bool:
                    observed = mutex.watch.get(member)
                    if observed is not None:
                        versions.add(observed.record.resource_version)
                    return len(versions) > times

                return check

            # One renewal first: by then the events of the sharder's own label writes have come back.
            await until("a renewal of the member Lease", renewed(1))
            passes = sharder.passes
            assert passes >= 1
            await until("four more renewals", renewed(5))

            assert sharder.passes == passes, "renewals of a member that stays a member caused passes"
            assert sharder.lists == len(ALL_KINDS), "a pass listed objects instead of using its view"

            # A member joining is news, though no object changed.
            other = Membership(mutex, "other")
            other.start()
            try:
                await until("a pass for the member that joined", lambda: sharder.passes > passes)
            finally:
                await other.stop()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await membership.stop()
            await mirror.stop()
