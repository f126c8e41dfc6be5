"""Request validation with the API's answers: required fields, types, enums, ranges, updatable fields.

The messages are Django REST framework's (the shapes cloudscale's API
follows): ``{"field": ["This field is required."]}``, nested objects as
nested dicts, lists of objects as lists of dicts. Rules that need the
stored objects (parents exist, one health monitor per pool) live in
``store``; this module only looks at one request body.

The enums come from ``lb_operator.cloud.models``, so the client and the
simulator cannot drift apart on them.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, get_args

from lb_operator.cloud.models import (
    Algorithm,
    HttpMethod,
    HttpVersion,
    ListenerProtocol,
    MonitorType,
    PoolProtocol,
)

Errors = dict[str, Any]
"""Field name → list of messages, or nested ``Errors`` (dict), or a list of them."""

LB_FLAVORS = ("lb-standard",)
ZONES = ("lpg1", "rma1")
HTTP_TYPES = ("http", "https")

_STATUS_CODES = re.compile(r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$")


class FieldInvalid(Exception):
    """Raised by a check: ``messages`` become the field's entry in the error body."""

    def __init__(self, messages: list[str] | Errors | list[Any]) -> None:
        super().__init__(messages)
        self.messages = messages


Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Field:
    """One field of a request body: how to check it, and what happens when it is absent or null."""

    check: Check | None = None
    nested: Mapping[str, Field] | None = None
    required: bool = False
    default: Callable[[], Any] | None = None
    nullable: bool = False
    updatable: bool = False


Schema = Mapping[str, Field]


def validate(schema: Schema, body: Any, *, partial: bool) -> tuple[dict[str, Any], Errors]:
    """Check ``body`` against ``schema``: the clean values, and the errors (empty if none).

    ``partial`` is a PATCH: absent fields stay absent and only updatable
    fields may be given. Unknown fields are ignored, as DRF does.
    """
    if not isinstance(body, dict):
        return {}, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {_type(body)}."]}
    values: dict[str, Any] = {}
    errors: Errors = {}
    for name, field in schema.items():
        if name not in body:
            if partial:
                continue
            if field.required:
                errors[name] = ["This field is required."]
            elif field.default is not None:
                values[name] = field.default()
            continue
        if partial and not field.updatable:
            errors[name] = ["This field cannot be changed; create a new object instead."]
            continue
        raw = body[name]
        if raw is None:
            if field.nullable:
                values[name] = None
            else:
                errors[name] = ["This field may not be null."]
            continue
        if field.nested is not None:
            nested_values, nested_errors = validate(field.nested, raw, partial=partial)
            if nested_errors:
                errors[name] = nested_errors
            else:
                values[name] = nested_values
            continue
        assert field.check is not None, f"field {name} has neither a check nor a nested schema"
        try:
            values[name] = field.check(raw)
        except FieldInvalid as exc:
            errors[name] = exc.messages
    return values, errors


def _type(value: Any) -> str:
    return {dict: "dict", list: "list", str: "str", int: "int", float: "float", bool: "bool"}.get(
        type(value), type(value).__name__
    )


# --- checks ---------------------------------------------------------------------------------------


def text(value: Any) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        raise FieldInvalid(["Not a valid string."])
    if not value.strip():
        raise FieldInvalid(["This field may not be blank."])
    return value


def choice(options: tuple[str, ...]) -> Check:
    """One of ``options``."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise FieldInvalid([f'"{value}" is not a valid choice.'])
        return value

    return check


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer (or a string of digits) within bounds."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise FieldInvalid(["A valid integer is required."])
        try:
            number = int(value)
        except ValueError:
            raise FieldInvalid(["A valid integer is required."]) from None
        if minimum is not None and number < minimum:
            raise FieldInvalid([f"Ensure this value is greater than or equal to {minimum}."])
        if maximum is not None and number > maximum:
            raise FieldInvalid([f"Ensure this value is less than or equal to {maximum}."])
        return number

    return check


def boolean(value: Any) -> bool:
    """A boolean (DRF also takes the usual spellings)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "1", 1):
        return True
    if value in ("false", "False", "0", 0):
        return False
    raise FieldInvalid(["Must be a valid boolean."])


def uuid(value: Any) -> str:
    """A UUID, normalized to lower case."""
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise FieldInvalid(["Must be a valid UUID."]) from None


def ip(value: Any) -> str:
    """An IPv4 or IPv6 address."""
    try:
        return str(ip_address(str(value)))
    except ValueError:
        raise FieldInvalid(["Enter a valid IPv4 or IPv6 address."]) from None


def cidrs(value: Any) -> list[str]:
    """A list of networks (``192.0.2.0/24``); errors are keyed by position, as DRF's ListField does."""
    if not isinstance(value, list):
        raise FieldInvalid([f'Expected a list of items but got type "{_type(value)}".'])
    errors: Errors = {}
    out: list[str] = []
    for index, item in enumerate(value):
        try:
            out.append(str(ip_network(str(item), strict=False)))
        except ValueError:
            errors[str(index)] = ["Enter a valid network in CIDR notation."]
    if errors:
        raise FieldInvalid(errors)
    return out


def tags(value: Any) -> dict[str, str]:
    """String keys to string values."""
    if not isinstance(value, dict):
        raise FieldInvalid([f'Expected a dictionary of items but got type "{_type(value)}".'])
    bad = sorted(str(key) for key, item in value.items() if not isinstance(item, str))
    if bad:
        raise FieldInvalid([f"Tag values must be strings (not: {', '.join(bad)})."])
    return {str(key): item for key, item in value.items()}


def vip_addresses(value: Any) -> list[dict[str, Any]]:
    """A list of ``{subnet?, address?}``, at least one of the two; errors as a list of per-item dicts."""
    if not isinstance(value, list):
        raise FieldInvalid([f'Expected a list of items but got type "{_type(value)}".'])
    out: list[dict[str, Any]] = []
    errors: list[Errors] = []
    for item in value:
        clean, item_errors = validate(VIP_ADDRESS, item, partial=False)
        if not item_errors and clean.get("subnet") is None and clean.get("address") is None:
            item_errors = {"non_field_errors": ["Either subnet or address is required."]}  # inferred
        out.append(clean)
        errors.append(item_errors)
    if any(errors):
        raise FieldInvalid(errors)
    return out


def expected_codes(value: Any) -> list[str]:
    """Status codes (``["200", "202"]``) or a single range (``["200-204"]``)."""
    if not isinstance(value, list) or not value:
        raise FieldInvalid(['Expected a non-empty list of status codes, e.g. ["200"] or ["200-204"].'])
    if not all(isinstance(code, str) and _STATUS_CODES.match(code) for code in value):
        raise FieldInvalid(['Each code must be a status code ("200") or a range ("200-204").'])
    if len(value) > 1 and any("-" in code for code in value):
        raise FieldInvalid(["A range must be the only entry."])
    return list(value)


def url_path(value: Any) -> str:
    """An absolute URL path."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise FieldInvalid(['Must be an absolute path starting with "/".'])
    return value


# --- the five kinds ------------------------------------------------------------------------------

PORT = integer(1, 65535)

VIP_ADDRESS: Schema = {
    "subnet": Field(uuid, nullable=True),
    "address": Field(ip, nullable=True),
}

LOAD_BALANCER: Schema = {
    "name": Field(text, required=True, updatable=True),
    "flavor": Field(choice(LB_FLAVORS), required=True),
    "zone": Field(choice(ZONES), required=True),
    "vip_addresses": Field(vip_addresses, nullable=True),
    "tags": Field(tags, default=dict, updatable=True),
}

POOL: Schema = {
    "name": Field(text, required=True, updatable=True),
    "load_balancer": Field(uuid, required=True),
    "algorithm": Field(choice(get_args(Algorithm)), required=True),
    "protocol": Field(choice(get_args(PoolProtocol)), required=True),
    "tags": Field(tags, default=dict, updatable=True),
}

MEMBER: Schema = {
    "name": Field(text, required=True, updatable=True),
    "protocol_port": Field(PORT, required=True),
    "address": Field(ip, required=True),
    "subnet": Field(uuid, required=True),
    "enabled": Field(boolean, default=lambda: True, updatable=True),
    "monitor_port": Field(PORT, nullable=True, default=lambda: None),
    "tags": Field(tags, default=dict, updatable=True),
}

LISTENER: Schema = {
    "name": Field(text, required=True, updatable=True),
    "pool": Field(uuid, required=True),
    "protocol": Field(choice(get_args(ListenerProtocol)), required=True, updatable=True),
    "protocol_port": Field(PORT, required=True, updatable=True),
    "allowed_cidrs": Field(cidrs, default=list, updatable=True),
    "timeout_client_data_ms": Field(integer(1), default=lambda: 50_000, updatable=True),
    "timeout_member_connect_ms": Field(integer(1), default=lambda: 5_000, updatable=True),
    "timeout_member_data_ms": Field(integer(1), default=lambda: 50_000, updatable=True),
    "tags": Field(tags, default=dict, updatable=True),
}

HTTP_CHECK: Schema = {
    "expected_codes": Field(expected_codes, default=lambda: ["200"], updatable=True),
    "method": Field(choice(get_args(HttpMethod)), default=lambda: "GET", updatable=True),
    "url_path": Field(url_path, default=lambda: "/", updatable=True),
    "version": Field(choice(get_args(HttpVersion)), default=lambda: "1.1"),
    "host": Field(text, nullable=True, default=lambda: None, updatable=True),
}

HEALTH_MONITOR: Schema = {
    "pool": Field(uuid, required=True),
    "type": Field(choice(get_args(MonitorType)), required=True),
    "delay_s": Field(integer(1), default=lambda: 2, updatable=True),
    "timeout_s": Field(integer(1), default=lambda: 1, updatable=True),
    "up_threshold": Field(integer(1, 10), default=lambda: 2, updatable=True),
    "down_threshold": Field(integer(1, 10), default=lambda: 3, updatable=True),
    "http": Field(nested=HTTP_CHECK, nullable=True, updatable=True),
    "tags": Field(tags, default=dict, updatable=True),
}


def check_health_monitor(merged: Mapping[str, Any]) -> Errors:
    """Rules across fields of a health monitor, on the values it would have after the request."""
    errors: Errors = {}
    if merged["timeout_s"] > merged["delay_s"]:
        errors["timeout_s"] = ["Must not be greater than delay_s."]
    if merged["type"] == "udp-connect" and merged["delay_s"] < 3:
        errors["delay_s"] = ["Must be at least 3 for udp-connect."]  # Octavia's rule; cloudscale runs it
    http = merged.get("http")
    if http is not None and merged["type"] not in HTTP_TYPES:
        errors["http"] = [f"Only allowed for the types {', '.join(HTTP_TYPES)}."]
    elif http is not None and http.get("host") is not None and http.get("version") != "1.1":
        errors["http"] = {"host": ['Requires version "1.1".']}
    return errors


def http_defaults() -> dict[str, Any]:
    """The HTTP options of an ``http``/``https`` monitor created without any."""
    values, _ = validate(HTTP_CHECK, {}, partial=False)
    return values
