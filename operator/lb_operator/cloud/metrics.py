"""Prometheus metrics of the cloud API client: every request, by method and outcome."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "lbop_cloud_requests",
    "Cloud API requests by HTTP method and outcome: the HTTP status, 'timeout' (no complete answer), "
    "'connection' (no answer at all) or 'cancelled' (the handler's deadline came first).",
    ["method", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "lbop_cloud_request_seconds",
    "Seconds from sending a cloud API request to its complete answer (or failure).",
    ["method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
