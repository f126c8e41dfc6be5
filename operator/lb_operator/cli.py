"""The ``lb-operator`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lb_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lb-operator",
        description="Cloud load balancers as Kubernetes objects, serialized per load balancer.",
    )
    parser.add_argument("--version", action="version", version=f"lb-operator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_simulator(commands)
    commands.add_parser(
        "run",
        help="run the operator in the foreground (settings from LBOP_* variables, see docs/operations.md)",
        description="Reconcile LoadBalancer, pool, member, listener and health-monitor objects in all "
        "namespaces until SIGINT/SIGTERM. Settings come from LBOP_* environment variables.",
    )
    for name, what in (
        ("shards", "members, their lease age, the objects each owns, and the sharder"),
        ("locks", "lock Leases: key, holder, how long held, transitions"),
    ):
        report = commands.add_parser(name, help=f"print {what} (reads the cluster of KUBECONFIG)")
        report.add_argument(
            "-n",
            "--namespace",
            default=os.environ.get("LBOP_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default",
            help="the operator's namespace, where its Leases are (default: LBOP_NAMESPACE, else %(default)s)",
        )
        report.add_argument(
            "--watch-namespaces",
            default=os.environ.get("LBOP_WATCH_NAMESPACES", ""),
            help="comma-separated namespaces of the objects (default: LBOP_WATCH_NAMESPACES, else all)",
        )
    return parser


def _report(args: argparse.Namespace) -> int:
    import asyncio

    from lb_operator import reports
    from lb_operator.handlers.runtime import kubernetes_client

    async def produce() -> str:
        api = await kubernetes_client()
        try:
            if args.command == "locks":
                return await reports.locks(api, args.namespace)
            namespaces = [n.strip() for n in args.watch_namespaces.split(",") if n.strip()]
            return await reports.shards(api, args.namespace, namespaces)
        finally:
            await api.close()  # type: ignore[no-untyped-call]

    try:
        print(asyncio.run(produce()))
    except Exception as error:  # one line that says what failed, not a traceback
        print(
            f"lb-operator {args.command}: cannot read the cluster: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    return 0


def _run() -> int:
    # Imported on use: Kopf is heavy, and `simulator` does not need it.
    import asyncio
    import logging

    import kopf

    from lb_operator.handlers import register
    from lb_operator.settings import OperatorSettings, SettingsError

    try:
        settings = OperatorSettings.from_env()  # fail before connecting to anything
    except SettingsError as error:
        print(f"lb-operator run: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = kopf.OperatorRegistry()
    register(registry, services=settings.services)
    namespaces = settings.watch_namespaces
    host = f"[{settings.listen_address}]" if ":" in settings.listen_address else settings.listen_address
    health = f"http://{host}:{settings.health_port}/healthz" if settings.health_port else None
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=health,
        )
    )
    return 0


def _add_simulator(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser(
        "simulator",
        help="serve the embedded cloud load-balancer API (cloudscale v1 paths) in the foreground",
        description="Serve the simulated cloudscale v1 load-balancer API until SIGINT/SIGTERM. "
        "It allows one change per load balancer at a time; see docs/backends.md.",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sim.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default: %(default)s)")
    sim.add_argument("--latency", type=float, default=0.2, help="seconds per change (default: %(default)s)")
    sim.add_argument(
        "--lb-ready-delay",
        type=float,
        default=1.0,
        help="seconds a new load balancer stays `changing` (default: %(default)s)",
    )
    sim.add_argument(
        "--mode",
        choices=("reject", "serialize", "queue", "async"),
        default="reject",
        help="overlapping changes on one load balancer: 409 or queue (default: %(default)s)",
    )
    sim.add_argument("--state", metavar="FILE", help="JSON file that keeps the state across restarts")
    sim.add_argument("--fault-500", type=float, default=0.0, metavar="P", help="probability of a 500")
    sim.add_argument("--fault-hang", type=float, default=0.0, metavar="P", help="probability of a hang")
    sim.add_argument(
        "--fault-lost",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a request is applied but answered 504 (its answer lost)",
    )
    sim.add_argument(
        "--fault-methods",
        default="",
        metavar="METHODS",
        help="comma-separated HTTP methods the faults apply to, e.g. PATCH,DELETE (default: all)",
    )
    sim.add_argument("--seed", type=int, help="seed of the fault dice (default: random)")
    sim.add_argument("--token", help="bearer token every request must carry (default: none)")


def _simulator(args: argparse.Namespace) -> int:
    # Imported on use: the other subcommands need no HTTP server.
    from pydantic import ValidationError

    from lb_operator import simulator

    try:
        settings = simulator.SimulatorSettings(
            host=args.host,
            port=args.port,
            latency=args.latency,
            lb_ready_delay=args.lb_ready_delay,
            mode=args.mode,
            state_file=args.state,
            fault_500=args.fault_500,
            fault_hang=args.fault_hang,
            fault_lost=args.fault_lost,
            fault_methods=tuple(m.strip().upper() for m in args.fault_methods.split(",") if m.strip()),
            seed=args.seed,
            token=args.token,
        )
    except ValidationError as exc:
        print(f"lb-operator simulator: {exc}", file=sys.stderr)
        return 2
    try:
        return simulator.run(settings)
    except OSError as exc:  # e.g. the port is taken: one line, not a traceback
        print(f"lb-operator simulator: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "simulator":
        return _simulator(args)
    if args.command == "run":
        return _run()
    if args.command in ("shards", "locks"):
        return _report(args)
    return 0
