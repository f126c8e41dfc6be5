"""Rendezvous (highest-random-weight) hashing: which live member owns a root key.

Why this and not a hash ring with virtual nodes: with the handful of
replicas an operator runs, rendezvous hashing balances as well, needs no
tuning, and moves the minimum on a membership change — when a member joins,
only the keys that now score highest on it move (about 1/N of them); when
one leaves, only its own keys move. Every replica computes the same answer
from the same member list, with no shared state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _score(key: str, member: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member that owns ``key``: the highest score; ``None`` when there is no member."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (_score(key, member), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best else None
