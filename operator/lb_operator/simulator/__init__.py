"""An embedded cloud load-balancer API: cloudscale's v1 paths and payloads, one change per LB at a time.

The default backend for the demo and the tests, and for anyone trying the
operator without a cloud account. It fails the way real clouds do when two
changes hit one load balancer at once (409), or queues them (``serialize``
mode), or answers first and stays ``changing`` afterwards (``async`` mode),
and counts every such overlap — the oracle that the operator's
Lease mutex works. See ``docs/backends.md``.

Run it with ``lb-operator simulator`` or, in tests,
``async with Simulator(SimulatorSettings(...)) as sim: ... sim.url``.
"""

from lb_operator.simulator.server import Simulator, run, serve
from lb_operator.simulator.settings import SimulatorSettings

__all__ = ["Simulator", "SimulatorSettings", "run", "serve"]
