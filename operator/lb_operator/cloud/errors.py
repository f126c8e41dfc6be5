"""One small exception hierarchy for every backend: what the caller should do decides the class.

- ``Invalid`` — permanent: the request itself is wrong. Show the message to
  the user; retrying the same request cannot help.
- ``Unauthorized`` — the API did not accept the token (401/403). Not the
  spec's fault and not permanent: a rotated Secret fixes it without any
  change to the objects, so callers retry.
- ``NotFound`` — the object (or its parent) does not exist.
- ``Busy`` — transient: the load balancer is applying another change, the
  API failed (5xx), timed out, or could not be reached. Retry later.

Messages never contain the API token: they are built from the method, the
path, the status and the API's own error text, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping


class CloudError(Exception):
    """Base of every error a cloud backend raises.

    Raised as itself only when the API answered something this client cannot
    read (e.g. a 2xx that is not JSON): neither the user's fault nor known to
    be transient.
    """


class Invalid(CloudError):
    """The API refused the request as invalid (4xx other than 404/408/409/429). Permanent.

    ``fields`` maps each offending field (dotted for nested ones, e.g.
    ``http.method`` or ``vip_addresses[0].subnet``) to the API's messages;
    ``detail`` is a message not tied to a field. Both are part of ``str()``.
    """

    def __init__(
        self,
        operation: str,
        status: int,
        fields: Mapping[str, list[str]] | None = None,
        detail: str | None = None,
        advice: str = "fix the spec and apply it again",
    ) -> None:
        self.operation = operation
        self.status = status
        self.fields = dict(fields or {})
        self.detail = detail
        parts = [f"{name}: {' '.join(messages)}" for name, messages in self.fields.items()]
        if detail:
            parts.insert(0, detail)
        said = "; ".join(parts) or "no reason given"
        super().__init__(f"{operation} was refused as invalid (HTTP {status}): {said}; {advice}")


class Unauthorized(CloudError):
    """The API refused the token (HTTP 401) or its rights (HTTP 403). Transient: fix the token, not the spec.

    The client re-reads its token file before raising this, so once the
    Secret holds a good token the next request goes through.
    """

    def __init__(
        self,
        operation: str,
        status: int,
        detail: str | None = None,
        credential: str = "the API token",
        advice: str = "put a valid token with write access in the operator's Secret (token file or "
        "CLOUDSCALE_API_TOKEN); it is re-read, and the objects recover by themselves",
    ) -> None:
        self.operation = operation
        self.status = status
        self.detail = detail
        said = f": {detail}" if detail else ""
        super().__init__(
            f"{operation} was refused: {credential} was not accepted (HTTP {status}{said}); {advice}"
        )


class NotFound(CloudError):
    """The object addressed by the request does not exist (HTTP 404)."""

    def __init__(self, operation: str, detail: str | None = None) -> None:
        self.operation = operation
        self.detail = detail
        why = f": {detail}" if detail else ""
        super().__init__(f"{operation} found nothing (HTTP 404{why}); it was deleted or never existed")


class Busy(CloudError):
    """Transient: another change is in progress (409), the API failed (5xx/429), timed out or is unreachable.

    ``status`` is the HTTP status, or ``None`` when no answer came back.
    """

    def __init__(self, operation: str, reason: str, status: int | None = None) -> None:
        self.operation = operation
        self.reason = reason
        self.status = status
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{operation} did not go through ({code}{reason}); retry later")
