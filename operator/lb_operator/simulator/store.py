"""The simulated cloud's objects: how they relate, what deleting one takes with it, how they look on the wire.

Plain synchronous code on plain dicts: it never awaits, so one call is
atomic on the event loop and the HTTP layer decides *when* a change happens
(``gate``), this module only *what* it does. Every child record keeps the
UUID of its load balancer, so "which load balancer does this change touch"
is one lookup.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any, Literal

from lb_operator.simulator.validation import HTTP_TYPES, Errors, http_defaults

Kind = Literal["load_balancer", "pool", "member", "listener", "health_monitor"]
KINDS: tuple[Kind, ...] = ("load_balancer", "pool", "member", "listener", "health_monitor")
PLURALS: dict[Kind, str] = {
    "load_balancer": "load_balancers",
    "pool": "pools",
    "member": "members",
    "listener": "listeners",
    "health_monitor": "health_monitors",
}
PATHS: dict[Kind, str] = {
    "load_balancer": "load-balancers",
    "pool": "load-balancers/pools",
    "listener": "load-balancers/listeners",
    "health_monitor": "load-balancers/health-monitors",
}
FLAVOR_NAMES = {"lb-standard": "LB-Standard"}
STATE_FORMAT = 1

# Public VIPs come from ranges that route nowhere (RFC 6598 and RFC 3849), so nobody mistakes them.
_PUBLIC_V4 = int(IPv4Address("100.64.0.0"))
_PRIVATE_V4 = int(IPv4Address("10.0.0.0"))


def _protocols_fit(listener: str, pool: str) -> Errors:
    """A ``udp`` listener forwards to a ``udp`` pool, a ``tcp`` one to a TCP pool (``tcp``, ``proxy``…)."""
    if (listener == "udp") != (pool == "udp"):
        return {"protocol": [f'A "{listener}" listener cannot forward to a "{pool}" pool.']}
    return {}


def _subnet_of(address: str) -> str:
    """A stable made-up subnet UUID for a VIP given by address alone: one per /24 (IPv4) or /64 (IPv6)."""
    prefix = 24 if ip_address(address).version == 4 else 64
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, str(ip_network(f"{address}/{prefix}", strict=False))))


_PUBLIC_V6 = int(IPv6Address("2001:db8::"))
_PUBLIC_SUBNETS = {
    4: {"uuid": "00000000-0000-4000-8000-000000000004", "cidr": "100.64.0.0/10"},
    6: {"uuid": "00000000-0000-4000-8000-000000000006", "cidr": "2001:db8::/32"},
}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _missing(value: str) -> list[str]:
    return [f"Object with uuid={value} does not exist."]


class StateError(ValueError):
    """A state file that is not a simulator state; the message says which file and what is wrong."""


class Store:
    """All objects of the simulated cloud, keyed by kind and UUID."""

    def __init__(self) -> None:
        self.objects: dict[Kind, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._vips_handed_out = 0

    # --- reading -----------------------------------------------------------------------------

    def get(self, kind: Kind, uuid: str) -> dict[str, Any] | None:
        """The record, or ``None``."""
        return self.objects[kind].get(uuid)

    def load_balancer_of(self, kind: Kind, record: Mapping[str, Any]) -> str:
        """The UUID of the load balancer a record belongs to (its own for a load balancer)."""
        return str(record["uuid"] if kind == "load_balancer" else record["load_balancer"])

    def find(
        self, kind: Kind, tags: Mapping[str, str] | None = None, pool: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Records carrying at least ``tags``; for members, those of ``pool``."""
        for record in self.objects[kind].values():
            if pool is not None and record.get("pool") != pool:
                continue
            if tags and any(record["tags"].get(key) != value for key, value in tags.items()):
                continue
            yield record

    def counts(self) -> dict[str, int]:
        """How many objects of each kind exist, e.g. ``{"load_balancers": 2, ...}``."""
        return {PLURALS[kind]: len(self.objects[kind]) for kind in KINDS}

    # --- rules that need other objects -------------------------------------------------------

    def check_create(self, kind: Kind, values: Mapping[str, Any], pool: str | None = None) -> Errors:
        """Parents exist, one health monitor per pool, one listener per port and load balancer."""
        errors: Errors = {}
        if kind == "pool" and values["load_balancer"] not in self.objects["load_balancer"]:
            errors["load_balancer"] = _missing(values["load_balancer"])
        if kind in ("listener", "health_monitor"):
            parent = self.get("pool", values["pool"])
            if parent is None:
                errors["pool"] = _missing(values["pool"])
            elif kind == "health_monitor" and any(self.find("health_monitor", pool=values["pool"])):
                errors["pool"] = ["This pool already has a health monitor; a pool can have only one."]
            elif kind == "listener":
                errors.update(self._port_taken(parent["load_balancer"], values, None))
                errors.update(_protocols_fit(values["protocol"], parent["protocol"]))
        if kind == "member" and (pool is None or pool not in self.objects["pool"]):
            errors["pool"] = _missing(str(pool))
        return errors

    def check_update(self, kind: Kind, record: Mapping[str, Any], values: Mapping[str, Any]) -> Errors:
        """The same rules for a change of ``record`` to ``values``."""
        if kind == "listener" and ("protocol_port" in values or "protocol" in values):
            merged = {**record, **values}
            errors = self._port_taken(record["load_balancer"], merged, record["uuid"])
            pool = self.get("pool", record["pool"]) if record.get("pool") else None
            if pool is not None:
                errors.update(_protocols_fit(merged["protocol"], pool["protocol"]))
            return errors
        return {}

    def _port_taken(self, load_balancer: str, listener: Mapping[str, Any], myself: str | None) -> Errors:
        """A port is taken per protocol: a TCP and a UDP listener may share one (DNS on 53)."""
        port, protocol = listener["protocol_port"], listener["protocol"]
        for other in self.objects["listener"].values():
            same_place = other["load_balancer"] == load_balancer and other["protocol_port"] == port
            if same_place and other["protocol"] == protocol and other["uuid"] != myself:
                return {"protocol_port": [f"Port {port}/{protocol} is already used by another listener."]}
        return {}

    # --- changing ----------------------------------------------------------------------------

    def create(
        self, kind: Kind, values: Mapping[str, Any], uuid: str, pool: str | None = None
    ) -> dict[str, Any]:
        """Store a new object made of checked ``values`` (see ``check_create``) and return its record."""
        record: dict[str, Any] = {"uuid": uuid, **values, "created_at": _now()}
        if kind == "load_balancer":
            record["status"] = "changing"
            record["vip_addresses"] = self._vips(values.get("vip_addresses"))
        elif kind == "member":
            assert pool is not None
            record["pool"] = pool
            record["load_balancer"] = self.objects["pool"][pool]["load_balancer"]
        elif kind in ("listener", "health_monitor"):
            record["load_balancer"] = self.objects["pool"][values["pool"]]["load_balancer"]
        # (a pool has its load_balancer among the values already)
        if kind == "health_monitor":
            if record.get("http") is None and record["type"] in HTTP_TYPES:
                record["http"] = http_defaults()
            record.setdefault("http", None)
        self.objects[kind][uuid] = record
        return record

    def update(self, kind: Kind, uuid: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Apply checked partial ``values``; nested ``http`` options are merged, not replaced."""
        record = self.objects[kind][uuid] = self.merged(kind, uuid, values)
        return record

    def merged(self, kind: Kind, uuid: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """What the record would be after ``update`` (to check rules across fields before applying)."""
        record = dict(self.objects[kind][uuid])
        for name, value in values.items():
            if name == "http" and isinstance(value, dict) and isinstance(record.get("http"), dict):
                record["http"] = {**record["http"], **value}
            else:
                record[name] = value
        return record

    def set_status(self, uuid: str, status: str) -> bool:
        """Set a load balancer's status; ``False`` if it no longer exists."""
        record = self.objects["load_balancer"].get(uuid)
        if record is None:
            return False
        record["status"] = status
        return True

    def delete(self, kind: Kind, uuid: str) -> None:
        """Delete an object and what depends on it.

        A load balancer takes all its children; a pool takes its members and
        its health monitor, and listeners that used it keep existing without
        a pool (``"pool": null``, as the API shows such listeners).
        """
        if kind == "load_balancer":
            children: tuple[Kind, ...] = ("listener", "pool")
            for child in children:
                for record in list(self.find(child)):
                    if record["load_balancer"] == uuid:
                        self.delete(child, record["uuid"])
        elif kind == "pool":
            children = ("member", "health_monitor")
            for child in children:
                for record in list(self.find(child, pool=uuid)):
                    del self.objects[child][record["uuid"]]
            for listener in self.objects["listener"].values():
                if listener["pool"] == uuid:
                    listener["pool"] = None
        self.objects[kind].pop(uuid, None)

    def _vips(self, requested: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Private VIPs as requested (an address is made up if none is given), else one public v4 and v6."""
        vips: list[dict[str, Any]] = []
        if requested:
            for item in requested:
                self._vips_handed_out += 1
                address = item.get("address") or str(IPv4Address(_PRIVATE_V4 + self._vips_handed_out))
                # Given by address alone: the cloud finds the subnet; here, one made up per /24 (or /64).
                subnet = item.get("subnet") or _subnet_of(address)
                vips.append(
                    {
                        "version": ip_address(address).version,
                        "address": address,
                        "subnet": {"uuid": subnet, "cidr": None},
                    }
                )
            return vips
        self._vips_handed_out += 1
        n = self._vips_handed_out
        vips.append({"version": 4, "address": str(IPv4Address(_PUBLIC_V4 + n)), "subnet": _PUBLIC_SUBNETS[4]})
        vips.append({"version": 6, "address": str(IPv6Address(_PUBLIC_V6 + n)), "subnet": _PUBLIC_SUBNETS[6]})
        return vips

    # --- the wire format ---------------------------------------------------------------------

    def href(self, base: str, kind: Kind, record: Mapping[str, Any]) -> str:
        """The object's URL under ``base`` (``http://host:port/v1``)."""
        if kind == "member":
            return f"{base}/load-balancers/pools/{record['pool']}/members/{record['uuid']}"
        return f"{base}/{PATHS[kind]}/{record['uuid']}"

    def _stub(self, base: str, kind: Kind, uuid: str | None) -> dict[str, Any] | None:
        if uuid is None:
            return None
        record = self.objects[kind].get(uuid)
        name = record.get("name") if record else None
        return {"href": f"{base}/{PATHS[kind]}/{uuid}", "uuid": uuid, "name": name}

    def _subnet(self, base: str, subnet: Mapping[str, Any]) -> dict[str, Any]:
        return {"href": f"{base}/subnets/{subnet['uuid']}", "uuid": subnet["uuid"], "cidr": subnet["cidr"]}

    def render(self, base: str, kind: Kind, record: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON the API answers for ``record``: references as ``{href, uuid, name}`` stubs."""
        out: dict[str, Any] = {"href": self.href(base, kind, record), **record}
        if kind == "load_balancer":
            out["flavor"] = {"slug": record["flavor"], "name": FLAVOR_NAMES.get(record["flavor"])}
            out["zone"] = {"slug": record["zone"]}
            out["vip_addresses"] = [
                {**vip, "subnet": self._subnet(base, vip["subnet"])} for vip in record["vip_addresses"]
            ]
            return out
        out["load_balancer"] = self._stub(base, "load_balancer", record["load_balancer"])
        if kind in ("member", "listener", "health_monitor"):
            out["pool"] = self._stub(base, "pool", record["pool"])
        if kind == "member":
            out["subnet"] = self._subnet(base, {"uuid": record["subnet"], "cidr": None})
            # Nothing is probed here: a member is "up" as soon as its pool is monitored.
            monitored = any(self.find("health_monitor", pool=record["pool"]))
            out["monitor_status"] = "up" if monitored else "no_monitor"
        return out

    # --- saving and loading ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready data."""
        return {
            "format": STATE_FORMAT,
            "vips_handed_out": self._vips_handed_out,
            "objects": {PLURALS[kind]: list(self.objects[kind].values()) for kind in KINDS},
        }

    def restore(self, data: Any, source: str) -> None:
        """Replace everything with a ``snapshot``; ``StateError`` if ``data`` is not one."""
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateError(f"{source} is not a simulator state (format {STATE_FORMAT}); delete it")
        try:
            objects = {
                kind: {str(record["uuid"]): dict(record) for record in data["objects"][PLURALS[kind]]}
                for kind in KINDS
            }
            handed_out = int(data["vips_handed_out"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{source} is a damaged simulator state ({exc!r}); delete it") from None
        self.objects = objects
        self._vips_handed_out = handed_out


def new_uuid() -> str:
    """A fresh random UUID, as the API hands them out."""
    return str(uuidlib.uuid4())
