"""Prometheus metrics of sharding."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LEADER = Gauge("lbop_sharder_leader", "1 while this process is the elected sharder.")
OBJECTS = Gauge(
    "lbop_shard_objects", "Objects owned per live member, as the sharder last counted.", ["member"]
)
MOVES = Counter(
    "lbop_shard_moves", "Label writes by the sharder: 'assign' an owner, or ask one to 'drain'.", ["how"]
)
DRAINED = Counter("lbop_shard_drained", "Objects this replica let go of when the sharder moved them.")
MEMBER_CHANGES = Counter(
    "lbop_shard_member_changes", "Members the sharder saw 'join' or 'leave' (expired or released).", ["how"]
)
