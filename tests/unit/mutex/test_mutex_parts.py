"""Parts of the Lease mutex that need no API server."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from lb_operator.mutex import LockTimeout, MutexSettings, lease_name
from lb_operator.mutex.records import key_kind, parse_resource_version

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_lb_keys_map_to_readable_lease_names() -> None:
    assert lease_name("lb/8c6a0d4e-2d2b-4c8f-9b9a-5d1f3c2b1a00") == "lb.8c6a0d4e-2d2b-4c8f-9b9a-5d1f3c2b1a00"


@pytest.mark.parametrize(
    "key", ["Pool/ABC", "a" * 300, "ns/name with spaces", "x/../y", "lb/" + "9" * 270, "-lead/", "a.b/c"]
)
def test_any_key_maps_to_a_valid_distinct_lease_name(key: str) -> None:
    name = lease_name(key)
    assert len(name) <= 253
    assert SUBDOMAIN.match(name), name
    assert name != lease_name(key + "x")


def test_an_empty_key_is_refused_never_locked() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        lease_name("")


def test_key_kind_is_the_prefix_before_the_slash() -> None:
    assert key_kind("lb/123") == "lb"
    assert key_kind("pool/abc/def") == "pool"
    assert key_kind("plain") == "default"


def test_settings_defaults_match_the_design() -> None:
    settings = MutexSettings()
    assert (settings.lease_duration, settings.renew_deadline, settings.renew_interval) == (15, 10.0, 5.0)


@pytest.mark.parametrize(
    ("duration", "deadline", "interval"), [(10, 10, 5), (15, 5, 5), (15, 10, 12), (5, 10, 1)]
)
def test_settings_refuse_timings_out_of_order(duration: int, deadline: float, interval: float) -> None:
    with pytest.raises(ValidationError, match="lease_duration > renew_deadline > renew_interval"):
        MutexSettings(lease_duration=duration, renew_deadline=deadline, renew_interval=interval)


def test_resource_versions_must_be_comparable_integers() -> None:
    assert parse_resource_version("12345") == 12345
    with pytest.raises(ValueError, match="comparable resource versions"):
        parse_resource_version("opaque-v1")


def test_lock_timeout_says_who_holds_and_what_to_do() -> None:
    error = LockTimeout("lb/1", "pod-a/1234", 1.234, "connection refused")
    assert (error.key, error.holder, error.waited) == ("lb/1", "pod-a/1234", 1.234)
    assert str(error) == (
        "lock 'lb/1' not acquired within 1.23s (held by pod-a/1234; last error: connection refused); "
        "retry later or raise the deadline"
    )
