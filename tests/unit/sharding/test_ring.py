"""Rendezvous hashing: balanced, deterministic, and moving only what must move."""

from __future__ import annotations

from collections import Counter

from lb_operator.sharding.ring import owner

KEYS = [f"shop/lb-{n}" for n in range(3000)]


def test_no_member_owns_nothing() -> None:
    assert owner("shop/web", []) is None


def test_the_answer_depends_on_the_members_not_their_order() -> None:
    assert [owner(k, ["a", "b", "c"]) for k in KEYS] == [owner(k, ["c", "a", "b"]) for k in KEYS]


def test_keys_spread_evenly_over_three_members() -> None:
    counts = Counter(owner(k, ["a", "b", "c"]) for k in KEYS)
    assert set(counts) == {"a", "b", "c"}
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_a_joining_member_takes_only_keys_that_now_hash_to_it() -> None:
    before = {k: owner(k, ["a", "b", "c"]) for k in KEYS}
    after = {k: owner(k, ["a", "b", "c", "d"]) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "d" for k in moved)
    assert 600 <= len(moved) <= 900  # about a quarter


def test_a_leaving_member_gives_up_only_its_own_keys() -> None:
    before = {k: owner(k, ["a", "b", "c"]) for k in KEYS}
    after = {k: owner(k, ["a", "c"]) for k in KEYS}
    assert all(before[k] == "b" for k in KEYS if before[k] != after[k])
