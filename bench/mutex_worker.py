"""One lock contender for ``mutex_bench.py``: a real OS process driven over stdin/stdout.

Commands on stdin, one per line: ``acquire`` (answers ``waiting T`` at once;
``parked T`` when the wait behind another holder has begun — ``LeaseMutex``'s
wait hook, so the waiter is on its watch by then; ``acquired T`` once held),
``release`` (answers ``release T`` just before letting go, then
``released``), ``quit``. T is ``time.monotonic()``, one clock for every
process on the machine.

``--peer`` contends with the official client's Lease leader election
(``kubernetes.aio.leaderelection``) instead of ``LeaseMutex``: it has no
release, so ``release`` stops its candidate and the lease is left to expire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.leaderelection import electionconfig, leaderelection
from kubernetes.aio.leaderelection.resourcelock.leaselock import LeaseLock

from lb_operator.mutex import LeaseMutex, MutexSettings, Waiting

# client-go's defaults (LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s);
# the Python client documents none of its own.
PEER_TIMINGS = {"lease_duration": 15, "renew_deadline": 10, "retry_period": 2}


def say(*words: Any) -> None:
    print(*words, flush=True)


async def lines() -> Any:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().strip()


async def ours(api: client.ApiClient, args: argparse.Namespace) -> None:
    settings = MutexSettings(
        lease_duration=args.lease_duration,
        renew_deadline=args.lease_duration * 2 / 3,
        renew_interval=args.lease_duration / 3,
    )
    async with LeaseMutex(api, args.namespace, args.identity, settings) as mutex:
        loop = asyncio.get_running_loop()
        holding: asyncio.Task[None] | None = None
        release = asyncio.Event()

        async def parked(waiting: Waiting) -> None:
            if not waiting.local:
                say("parked", time.monotonic())

        async def hold() -> None:
            async with mutex.hold(args.key, deadline=loop.time() + 600, on_wait=parked):
                say("acquired", time.monotonic())
                await release.wait()
                say("release", time.monotonic())
            say("released")

        async for command in lines():
            if command == "acquire":
                release.clear()
                holding = asyncio.create_task(hold())
                say("waiting", time.monotonic())
            elif command == "release":
                release.set()
                assert holding is not None
                await holding
            elif command == "quit":
                return


class PeerLeaseLock(LeaseLock):  # type: ignore[misc]
    """The official LeaseLock with one upstream bug worked around, timings untouched.

    kubernetes 37.0.2's ``LeaseLock.create`` passes ``pretty=True`` where the
    generated API now validates a string, so every first acquisition raises
    a pydantic ValidationError and the candidate dies. Same request, minus that flag.
    """

    async def create(self, name: str, namespace: str, election_record: Any) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name), spec=self.update_lease(election_record)
        )
        try:
            await self.api_instance.create_namespaced_lease(namespace, body)
        except client.exceptions.ApiException:
            return False
        return True


async def peer(api: client.ApiClient, args: argparse.Namespace) -> None:
    running: asyncio.Task[None] | None = None

    async def on_started() -> None:
        say("acquired", time.monotonic())

    async def on_stopped() -> None:
        pass

    async for command in lines():
        if command == "acquire":
            lock = PeerLeaseLock(args.key.replace("/", "-"), args.namespace, args.identity, api)
            cfg = electionconfig.Config(
                lock, onstarted_leading=on_started, onstopped_leading=on_stopped, **PEER_TIMINGS
            )
            running = asyncio.create_task(leaderelection.LeaderElection(cfg).run())
            running.add_done_callback(
                lambda task: task.cancelled() or print(task.exception(), file=sys.stderr)
            )
            say("waiting", time.monotonic())
        elif command == "release":
            say("release", time.monotonic())
            assert running is not None
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            say("released")
        elif command == "quit":
            return


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--lease-duration", type=int, default=15)
    parser.add_argument("--peer", action="store_true")
    args = parser.parse_args()
    configuration = client.Configuration()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    await config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        await (peer if args.peer else ours)(api, args)


if __name__ == "__main__":
    asyncio.run(main())
