"""Small builders for structural OpenAPI v3 schemas, so each kind reads as a table of fields.

Every builder takes the field's description first: ``kubectl explain`` shows
it, and a field without one is a field a user has to guess about.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def uuid(description: str) -> Schema:
    return string(description, pattern=UUID_PATTERN, maxLength=36)


def ip_address(description: str) -> Schema:
    return string(
        description,
        maxLength=45,
        **{
            "x-kubernetes-validations": [{"rule": "isIP(self)", "message": "must be an IPv4 or IPv6 address"}]
        },
    )


def cidr(description: str) -> Schema:
    return string(
        description,
        maxLength=49,
        **{
            "x-kubernetes-validations": [
                {"rule": "isCIDR(self)", "message": "must be a CIDR such as 192.0.2.0/24 or 2001:db8::/32"}
            ]
        },
    )


def integer(description: str, minimum: int | None = None, maximum: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", "description": description, **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def port(description: str) -> Schema:
    return integer(description, 1, 65535)


def boolean(description: str, **extra: Any) -> Schema:
    return {"type": "boolean", "description": description, **extra}


def enum(description: str, values: list[str], **extra: Any) -> Schema:
    return string(description, enum=values, **extra)


def array(description: str, items: Schema, max_items: int, **extra: Any) -> Schema:
    return {"type": "array", "description": description, "items": items, "maxItems": max_items, **extra}


def obj(
    description: str,
    properties: dict[str, Schema],
    required: list[str] | None = None,
    rules: list[dict[str, str]] | None = None,
) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = required
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def tags() -> Schema:
    return {
        "type": "object",
        "description": "Tags (string key/value pairs) put on the cloud object; the operator adds its own "
        "`lboperator.dev/*` tags beside them.",
        "additionalProperties": {"type": "string", "maxLength": 256},
        "maxProperties": 32,
    }


def name_ref(kind: str) -> Schema:
    return obj(
        f"A {kind} object in the same namespace, by name.",
        {"name": string(f"Name of the {kind}.", minLength=1, maxLength=253)},
        required=["name"],
    )


def exactly_one(ref: str, uuid_field: str, kind: str) -> dict[str, str]:
    return {
        "rule": f"has(self.{ref}) != has(self.{uuid_field})",
        "message": f"set exactly one of {ref} (a {kind} object in this namespace) or {uuid_field} "
        f"(a {kind} not managed here)",
    }


def immutable(field: str, why: str) -> dict[str, str]:
    """A transition rule on the spec: ``field`` may be neither changed, added nor removed."""
    same_presence = f"has(self.{field}) == has(oldSelf.{field})"
    same_value = f"(!has(self.{field}) || self.{field} == oldSelf.{field})"
    return {
        "rule": f"{same_presence} && {same_value}",
        "message": f"{field} is immutable: {why}; delete the object and create a new one to change it",
    }
