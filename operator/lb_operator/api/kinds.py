"""The five custom resources: their names, spec schemas, status and printer columns.

The single source of ``crds/`` (``make crds``). Which fields are immutable
follows what the cloud API can update (see ``lb_operator.cloud.models``):
a field the cloud cannot change is refused at admission by a CEL rule, so
the user hears it from ``kubectl apply`` instead of from a stuck object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lb_operator.api.schema import (
    Schema,
    array,
    boolean,
    cidr,
    enum,
    exactly_one,
    immutable,
    integer,
    ip_address,
    name_ref,
    obj,
    port,
    string,
    tags,
    uuid,
)

GROUP = "lboperator.dev"
VERSION = "v1alpha1"
CATEGORY = "lboperator"


@dataclass(frozen=True)
class Kind:
    """One custom resource kind."""

    kind: str
    plural: str
    short: str
    description: str
    spec: Schema
    status: dict[str, Schema] = field(default_factory=dict)
    columns: list[dict[str, str]] = field(default_factory=list)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _ready_column() -> dict[str, str]:
    return {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'}


def _uuid_column() -> dict[str, str]:
    return {"name": "UUID", "type": "string", "jsonPath": ".status.uuid"}


def _age_column() -> dict[str, str]:
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _pool_parent(kind: str) -> tuple[dict[str, Schema], list[dict[str, str]]]:
    """The fields every child of a pool shares: which pool, by reference or by UUID."""
    properties = {
        "poolRef": name_ref("LoadBalancerPool"),
        "poolUUID": uuid("UUID of a pool not managed by this operator (instead of poolRef)."),
    }
    rules = [
        exactly_one("poolRef", "poolUUID", "pool"),
        immutable("poolRef", f"a {kind} cannot move to another pool"),
        immutable("poolUUID", f"a {kind} cannot move to another pool"),
    ]
    return properties, rules


_MEMBER_PARENT, _MEMBER_PARENT_RULES = _pool_parent("member")
_LISTENER_PARENT, _LISTENER_PARENT_RULES = _pool_parent("listener")
_MONITOR_PARENT, _MONITOR_PARENT_RULES = _pool_parent("health monitor")

_CHILD_STATUS = {
    "loadBalancerUUID": string("UUID of the cloud load balancer this object belongs to (the lock key)."),
    "poolUUID": string("UUID of the cloud pool this object belongs to."),
}

LOAD_BALANCER = Kind(
    kind="LoadBalancer",
    plural="loadbalancers",
    short="lb",
    description="A cloud load balancer; its pools, members, listeners and monitors are objects of their own.",
    spec=obj(
        "The load balancer wanted in the cloud.",
        {
            "zone": string(
                "Zone to create the load balancer in. cloudscale: required, e.g. `lpg1` or `rma1`. "
                "Octavia: an availability zone (`openstack availability zone list`); optional.",
                minLength=1,
                maxLength=64,
                pattern="^[a-zA-Z0-9_.-]+$",
            ),
            "flavor": string(
                "Size of the load balancer. cloudscale: a flavor slug, default `lb-standard`. Octavia: a "
                "flavor's name or ID (`openstack loadbalancer flavor list`), default the cloud's.",
                minLength=1,
                maxLength=64,
            ),
            "vipAddresses": array(
                "Virtual IPs in private subnets. cloudscale: leave out for a public address. Octavia: "
                "exactly one, with its subnetUUID.",
                obj(
                    "One virtual IP.",
                    {
                        "subnetUUID": uuid(
                            "UUID of the subnet the VIP lives in; found by the cloud from "
                            "`address` when left out."
                        ),
                        "address": ip_address("The VIP; chosen by the cloud in `subnetUUID` when left out."),
                    },
                    rules=[
                        {
                            "rule": "has(self.subnetUUID) || has(self.address)",
                            "message": "give a VIP's subnetUUID, its address, or both",
                        }
                    ],
                ),
                max_items=8,
            ),
            "tags": tags(),
            "cloudName": string(
                "Name of the load balancer in the cloud; defaults to `<namespace>-<name>`.",
                minLength=1,
                maxLength=255,
            ),
        },
        rules=[
            immutable("zone", "the cloud cannot move a load balancer between zones"),
            immutable("flavor", "the cloud cannot resize a load balancer"),
            immutable("vipAddresses", "the cloud cannot change a load balancer's VIPs"),
        ],
    ),
    status={
        "vipAddresses": array(
            "The VIPs the cloud assigned.",
            obj("One VIP.", {"address": string("The address."), "subnetUUID": string("Its subnet.")}),
            max_items=16,
        ),
    },
    columns=[
        _ready_column(),
        {"name": "Zone", "type": "string", "jsonPath": ".spec.zone"},
        {"name": "VIP", "type": "string", "jsonPath": ".status.vipAddresses[0].address"},
        _uuid_column(),
        _age_column(),
    ],
)

POOL = Kind(
    kind="LoadBalancerPool",
    plural="loadbalancerpools",
    short="lbpool",
    description="A pool of backend members on a load balancer; listeners forward to it.",
    spec=obj(
        "The pool wanted in the cloud.",
        {
            "loadBalancerRef": name_ref("LoadBalancer"),
            "loadBalancerUUID": uuid(
                "UUID of a load balancer not managed by this operator (instead of loadBalancerRef)."
            ),
            "algorithm": enum(
                "How connections are spread over members.", ["round_robin", "least_connections", "source_ip"]
            ),
            "protocol": enum(
                "Protocol spoken to members: plain `tcp`, `tcp` with a PROXY protocol header (`proxy`, "
                "`proxyv2`), or `udp` (for `udp` listeners, e.g. DNS).",
                ["tcp", "proxy", "proxyv2", "udp"],
            ),
            "tags": tags(),
        },
        required=["algorithm", "protocol"],
        rules=[
            exactly_one("loadBalancerRef", "loadBalancerUUID", "load balancer"),
            immutable("loadBalancerRef", "a pool cannot move to another load balancer"),
            immutable("loadBalancerUUID", "a pool cannot move to another load balancer"),
            immutable("algorithm", "the cloud cannot change a pool's algorithm"),
            immutable("protocol", "the cloud cannot change a pool's protocol"),
        ],
    ),
    status={"loadBalancerUUID": _CHILD_STATUS["loadBalancerUUID"]},
    columns=[
        _ready_column(),
        {"name": "LoadBalancer", "type": "string", "jsonPath": ".spec.loadBalancerRef.name"},
        {"name": "Algorithm", "type": "string", "jsonPath": ".spec.algorithm"},
        _uuid_column(),
        _age_column(),
    ],
)

MEMBER = Kind(
    kind="LoadBalancerPoolMember",
    plural="loadbalancerpoolmembers",
    short="lbmember",
    description="A backend server in a pool.",
    spec=obj(
        "The pool member wanted in the cloud.",
        {
            **_MEMBER_PARENT,
            "address": ip_address("IP address of the backend server."),
            "protocolPort": port("Port on the backend server that receives traffic."),
            "subnetUUID": uuid("UUID of the subnet through which the backend server is reached."),
            "enabled": boolean("Whether the member receives traffic.", default=True),
            "monitorPort": port("Port the health monitor checks; defaults to protocolPort."),
            "tags": tags(),
        },
        required=["address", "protocolPort", "subnetUUID"],
        rules=[
            *_MEMBER_PARENT_RULES,
            immutable("address", "the cloud cannot change a member's address"),
            immutable("protocolPort", "the cloud cannot change a member's port"),
            immutable("subnetUUID", "the cloud cannot change a member's subnet"),
            immutable("monitorPort", "the cloud cannot change a member's monitor port"),
        ],
    ),
    status=dict(
        _CHILD_STATUS, monitorStatus=string("Health as the cloud's monitor sees it (`up`, `down`, ...).")
    ),
    columns=[
        _ready_column(),
        {"name": "Pool", "type": "string", "jsonPath": ".spec.poolRef.name"},
        {"name": "Address", "type": "string", "jsonPath": ".spec.address"},
        {"name": "Port", "type": "integer", "jsonPath": ".spec.protocolPort"},
        _uuid_column(),
        _age_column(),
    ],
)

LISTENER = Kind(
    kind="LoadBalancerListener",
    plural="loadbalancerlisteners",
    short="lblistener",
    description="A port on the load balancer's VIPs that forwards connections to a pool.",
    spec=obj(
        "The listener wanted in the cloud.",
        {
            **_LISTENER_PARENT,
            "protocol": enum(
                "Protocol of the listener: `tcp`, or `udp` (its pool must be `udp` too). A `tcp` and a "
                "`udp` listener may share a port.",
                ["tcp", "udp"],
                default="tcp",
            ),
            "protocolPort": port("Port the load balancer listens on."),
            "allowedCIDRs": array(
                "Clients allowed to connect; everyone when empty.", cidr("A client network."), max_items=64
            ),
            "timeoutClientDataMs": integer(
                "Milliseconds of client inactivity before the connection is closed.", 1, 86_400_000
            ),
            "timeoutMemberConnectMs": integer(
                "Milliseconds to wait for a member to accept a connection.", 1, 86_400_000
            ),
            "timeoutMemberDataMs": integer(
                "Milliseconds of member inactivity before the connection is closed.", 1, 86_400_000
            ),
            "tags": tags(),
        },
        required=["protocolPort"],
        rules=list(_LISTENER_PARENT_RULES),
    ),
    status=dict(_CHILD_STATUS),
    columns=[
        _ready_column(),
        {"name": "Pool", "type": "string", "jsonPath": ".spec.poolRef.name"},
        {"name": "Port", "type": "integer", "jsonPath": ".spec.protocolPort"},
        _uuid_column(),
        _age_column(),
    ],
)

HEALTH_MONITOR = Kind(
    kind="LoadBalancerHealthMonitor",
    plural="loadbalancerhealthmonitors",
    short="lbhm",
    description="How the load balancer checks the members of a pool (one per pool).",
    spec=obj(
        "The health monitor wanted in the cloud.",
        {
            **_MONITOR_PARENT,
            "type": enum(
                "How members are checked; `udp-connect` for `udp` pools (needs delaySeconds ≥ 3).",
                ["ping", "tcp", "http", "https", "tls-hello", "udp-connect"],
            ),
            "delaySeconds": integer("Seconds between two checks.", 1, 3600, default=2),
            "timeoutSeconds": integer("Seconds a check may take.", 1, 3600, default=1),
            "upThreshold": integer("Successful checks before a member is up.", 1, 10, default=2),
            "downThreshold": integer("Failed checks before a member is down.", 1, 10, default=3),
            "http": obj(
                "HTTP options, for type `http` and `https` only.",
                {
                    "expectedCodes": array(
                        "HTTP status codes that mean healthy (default 200).",
                        string("A status code.", pattern="^[1-5][0-9][0-9]$"),
                        max_items=16,
                    ),
                    "method": enum(
                        "HTTP method of the check (default GET).",
                        ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"],
                    ),
                    "urlPath": string("Path requested (default /).", pattern="^/", maxLength=1024),
                    "version": enum("HTTP version (default 1.1).", ["1.0", "1.1"]),
                    "host": string("Host header sent (needed with HTTP 1.1 by some servers).", maxLength=255),
                },
            ),
            "tags": tags(),
        },
        required=["type"],
        rules=[
            *_MONITOR_PARENT_RULES,
            immutable("type", "the cloud cannot change a health monitor's type"),
            {
                "rule": "!has(self.http) || self.type in ['http', 'https']",
                "message": "http options need type http or https",
            },
            {
                "rule": "self.timeoutSeconds <= self.delaySeconds",
                "message": "timeoutSeconds must not exceed delaySeconds",
            },
            {
                "rule": "self.type != 'udp-connect' || self.delaySeconds >= 3",
                "message": "a udp-connect monitor needs delaySeconds of at least 3 (e.g. delaySeconds: 3, "
                "timeoutSeconds: 2)",
            },
            {
                "rule": "!has(self.http) || !has(oldSelf.http) || !has(self.http.version) || "
                "(has(oldSelf.http.version) && self.http.version == oldSelf.http.version)",
                "message": "http.version is immutable: the cloud cannot change it; delete the object and "
                "create a new one to change it",
            },
        ],
    ),
    status=dict(_CHILD_STATUS),
    columns=[
        _ready_column(),
        {"name": "Pool", "type": "string", "jsonPath": ".spec.poolRef.name"},
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        _uuid_column(),
        _age_column(),
    ],
)

ALL_KINDS = (LOAD_BALANCER, POOL, MEMBER, LISTENER, HEALTH_MONITOR)
