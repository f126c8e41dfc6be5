"""``make bench-mutex``: what the Lease mutex costs and how fast it hands over, next to baselines.

Every figure is measured in this one run, against the same API server:

1. overhead — an uncontended hold + release, against a bare create + update of
   a Lease with the official client (the least any Lease lock must write);
   and the API requests one critical section costs.
2. hand-over — release in process A → acquired in process B, p50/p99, next to
   the official client's Lease leader election (``kubernetes.aio.leaderelection``,
   client-go's default timings) handing over between two processes.
3. crash take-over — SIGKILL the holder; time until a waiter in another
   process holds, as a ratio of ``lease_duration``.

The last line is machine-readable: ``RESULT overhead_ratio=… requests_per_section=…
handover_p50_ms=… handover_p99_ms=… peer_handover_p99_ms=… speedup=… takeover_ratio=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
import time
import uuid
from pathlib import Path

from kubernetes.aio import client, config

from lb_operator.mutex import LeaseMutex
from lb_operator.testing import Cluster, open_cluster

WORKER = Path(__file__).with_name("mutex_worker.py")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def overhead(api: client.ApiClient, namespace: str, rounds: int) -> tuple[float, float]:
    leases = client.CoordinationV1Api(api)
    now = datetime.datetime.now(datetime.UTC)

    async def bare(name: str) -> None:
        spec = client.V1LeaseSpec(holder_identity="bench", lease_duration_seconds=15, acquire_time=now)
        lease = await leases.create_namespaced_lease(
            namespace, client.V1Lease(metadata=client.V1ObjectMeta(name=name), spec=spec)
        )
        lease.spec.holder_identity = None
        await leases.replace_namespaced_lease(name, namespace, lease)

    baseline: list[float] = []
    ours: list[float] = []
    async with LeaseMutex(api, namespace, "bench", sweep=False) as mutex:
        loop = asyncio.get_running_loop()
        await mutex.try_hold("warm/up")  # start the watch before timing
        before = sum(mutex.api.ledger.requests[v] for v in ("get", "create", "update"))
        for round_ in range(rounds):  # interleaved, so drift on a noisy machine hits both alike
            started = time.perf_counter()
            await bare(f"bare-{round_}")
            baseline.append(time.perf_counter() - started)
            started = time.perf_counter()
            async with mutex.hold(f"bench/{round_}", deadline=loop.time() + 30):
                pass
            ours.append(time.perf_counter() - started)
        requests = sum(mutex.api.ledger.requests[v] for v in ("get", "create", "update")) - before
    ratio = statistics.median(ours) / statistics.median(baseline)
    print(
        f"overhead: hold+release median {statistics.median(ours) * 1000:.2f} ms, "
        f"bare create+update {statistics.median(baseline) * 1000:.2f} ms, ratio {ratio:.2f}, "
        f"{requests / rounds:.2f} requests per section"
    )
    return ratio, requests / rounds


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, cluster: Cluster, namespace: str, identity: str, key: str, *extra: str) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            namespace,
            "--identity",
            identity,
            "--key",
            key,
            *extra,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()

    async def expect(self, word: str, within: float = 120) -> float:
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), within)).decode().split()
        if not line or line[0] != word:
            raise RuntimeError(f"expected {word!r}, the worker said {line!r} (its stderr is above)")
        return float(line[1]) if len(line) > 1 else 0.0

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def handovers(cluster: Cluster, namespace: str, count: int, *extra: str) -> list[float]:
    """Ping-pong one key between two processes; each sample is release-in-A → acquired-in-B."""
    key = f"bench/handover-{uuid.uuid4().hex[:6]}"
    a = await Worker.start(cluster, namespace, "a", key, *extra)
    b = await Worker.start(cluster, namespace, "b", key, *extra)
    samples: list[float] = []
    try:
        await a.send("acquire")
        await a.expect("waiting")
        await a.expect("acquired")
        holder, waiter = a, b
        for _ in range(count):
            await waiter.send("acquire")
            await waiter.expect("waiting")
            if "--peer" in extra:
                await asyncio.sleep(0.05)  # the leader election has no wait hook; it polls anyway
            else:
                await waiter.expect("parked")  # on its watch behind the holder: the path being timed
            await holder.send("release")
            released = await holder.expect("release")
            acquired = await waiter.expect("acquired")
            await holder.expect("released")
            samples.append(acquired - released)
            holder, waiter = waiter, holder
    finally:
        await a.stop()
        await b.stop()
    return samples


async def takeover(cluster: Cluster, namespace: str, lease_duration: int, rounds: int) -> list[float]:
    ratios = []
    for _ in range(rounds):
        key = f"bench/crash-{uuid.uuid4().hex[:6]}"
        extra = ("--lease-duration", str(lease_duration))
        a = await Worker.start(cluster, namespace, "a", key, *extra)
        b = await Worker.start(cluster, namespace, "b", key, *extra)
        try:
            await a.send("acquire")
            await a.expect("waiting")
            await a.expect("acquired")
            await b.send("acquire")
            await b.expect("waiting")
            await b.expect("parked")
            await asyncio.sleep(lease_duration / 2)  # mid-lease: between two renewals
            killed = time.monotonic()
            a.process.kill()
            acquired = await b.expect("acquired", within=lease_duration * 4)
            ratios.append((acquired - killed) / lease_duration)
        finally:
            await a.stop()
            await b.stop()
    return ratios


async def run(args: argparse.Namespace) -> None:
    with open_cluster() as cluster:
        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
        async with client.ApiClient(configuration) as api:
            namespace = f"bench-{uuid.uuid4().hex[:6]}"
            await client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
            )
            ratio, per_section = await overhead(api, namespace, args.rounds)

            ours = await handovers(cluster, namespace, args.handovers)
            p50, p99 = percentile(ours, 0.5) * 1000, percentile(ours, 0.99) * 1000
            print(
                f"hand-over (ours, {len(ours)}): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"max {max(ours) * 1000:.1f} ms"
            )

            peer = await handovers(cluster, namespace, args.peer_handovers, "--peer")
            peer_p50, peer_p99 = percentile(peer, 0.5) * 1000, percentile(peer, 0.99) * 1000
            print(
                f"hand-over (official leader election, {len(peer)}): "
                f"p50 {peer_p50:.0f} ms, p99 {peer_p99:.0f} ms"
            )

            ratios = await takeover(cluster, namespace, args.takeover_duration, args.takeovers)
            print(
                f"crash take-over / lease_duration ({args.takeover_duration}s): "
                + ", ".join(f"{r:.2f}" for r in ratios)
            )
    print(
        f"RESULT overhead_ratio={ratio:.2f} requests_per_section={per_section:.2f} "
        f"handover_p50_ms={p50:.1f} handover_p99_ms={p99:.1f} peer_handover_p99_ms={peer_p99:.0f} "
        f"speedup={peer_p99 / p99:.0f} takeover_ratio={max(ratios):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="uncontended sections and baseline pairs")
    parser.add_argument("--handovers", type=int, default=200, help="hand-overs of the Lease mutex")
    parser.add_argument(
        "--peer-handovers", type=int, default=5, help="hand-overs of the leader election (~15 s each)"
    )
    parser.add_argument("--takeovers", type=int, default=3, help="crash take-overs")
    parser.add_argument(
        "--takeover-duration", type=int, default=3, help="lease_duration (s) for the crash rounds"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
