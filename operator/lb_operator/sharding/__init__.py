"""Active-active replicas: each object is owned by one live replica, each load balancer's tree by one.

- ``ring``: rendezvous hashing of a root key over the live members.
- ``roots``: the root key of an object — its load balancer — from its spec.
- ``members``: each replica's member Lease (held through the Lease mutex).
- ``sharder``: the one elected process that labels objects with their owner.
- ``drain``: a replica letting go of objects the sharder moves away from it.
- ``nudge``: a safety net for watch events a replica's Kopf never received.

See ``docs/operations.md`` for what it guarantees.
"""

SHARD_LABEL = "lboperator.dev/shard"
"""The member (replica identity) that owns the object; each replica's Kopf watches only its own."""

DRAIN_LABEL = "lboperator.dev/drain"
"""Set by the sharder on an object moving away from a live owner; the owner removes both labels."""

FINALIZER = "lboperator.dev/finalizer"
"""Kopf's finalizer on every object (``settings.persistence.finalizer``). The sharder puts it on with an
object's first shard label, in the same write, which saves Kopf a write of its own."""

__all__ = ["DRAIN_LABEL", "FINALIZER", "SHARD_LABEL"]
