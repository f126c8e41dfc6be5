"""One HTTP exchange with a cloud API, bounded and counted: what every backend's client sends through.

Why its own module: each backend differs in its paths, bodies, error
bodies and credentials, but not in how one request goes — a connection pool
shared by the process, a bound on each request, the outcome counted in the
metrics, and a failure that never carries the request (its credentials
included) along. ``answer`` maps a status onto the error classes of
``cloud.errors`` the same way for every backend; a backend only says how to
read its error bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from lb_operator import __version__
from lb_operator.cloud import metrics
from lb_operator.cloud.errors import Busy, CloudError, Invalid, NotFound

logger = logging.getLogger(__name__)

RETRIABLE = frozenset({408, 409, 425, 429})
"""Statuses that mean "not now" rather than "never": the request may succeed unchanged later."""

M = TypeVar("M", bound=BaseModel)

ErrorReader = Callable[[bytes], tuple[dict[str, list[str]], str | None]]
"""Splits an error body into field messages (by dotted field name) and a general detail."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    payload: bytes


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """A TLS context that trusts the CAs of ``ca_file`` (PEM) instead of the system's store.
    ``ValueError`` saying what is wrong with the file. Blocking (it reads the file)."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError:  # an OSError too: first
        raise ValueError(f"the CA bundle {ca_file} holds no PEM certificate") from None
    except OSError as error:
        raise ValueError(f"cannot read the CA bundle {ca_file}: {error.strerror or error}") from None


class Transport:
    """A connection pool to one API and the bounded, counted exchange of one request over it.

    ``untrusted``: what to do when the server's TLS certificate is not trusted
    (part of the error's message).
    """

    def __init__(
        self,
        base_url: str,
        request_timeout: float,
        connect_timeout: float,
        connection_limit: int,
        untrusted: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._request_timeout = request_timeout
        self._connection_limit = connection_limit
        self._untrusted = untrusted
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def open(self, tls: ssl.SSLContext | None = None) -> None:
        """Open the pool; ``tls``: trust what it trusts instead of the system's store."""
        if self._session is not None:
            raise RuntimeError("this client is already open; share it instead of opening it again")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._connection_limit, ssl=tls if tls is not None else True
            ),
            headers={"Accept": "application/json", "User-Agent": f"lb-operator/{__version__}"},
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(
        self,
        operation: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        base_url: str | None = None,
    ) -> Answer:
        """One HTTP exchange: status, reason and body; ``Busy`` when no complete answer came back."""
        session = self._session
        if session is None:
            raise RuntimeError("the cloud client is not open; use `async with` or await open() first")
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "cancelled"
        # Failures are re-raised `from None`: the library's exceptions carry the request,
        # headers included, and a credential must not travel with an error.
        try:
            async with session.request(
                method,
                f"{(base_url or self.base_url).rstrip('/')}/{path}",
                json=body,
                params=params,
                headers=dict(headers),
                timeout=self._timeout,
                allow_redirects=False,  # a redirect would carry a credential header to wherever it points
            ) as response:
                answer = Answer(response.status, response.reason or "", await response.read())
            outcome = str(answer.status)
        except TimeoutError:
            outcome = "timeout"
            raise Busy(operation, f"no complete answer within {self._request_timeout:g}s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            outcome = "connection"
            reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
            raise Busy(
                operation, f"the server's TLS certificate is not trusted ({reason}){self._untrusted}"
            ) from None
        except aiohttp.ClientError as exc:
            outcome = "connection"
            raise Busy(operation, f"{type(exc).__name__}: {exc}") from None
        finally:
            metrics.REQUESTS.labels(method=method, outcome=outcome).inc()
            metrics.REQUEST_SECONDS.labels(method=method).observe(loop.time() - started)
        logger.debug("%s answered %d in %.3fs", operation, answer.status, loop.time() - started)
        return answer


def decoded(operation: str, answer: Answer, read_error: ErrorReader) -> Any:
    """The JSON of a 2xx answer (``None`` when empty), or the error its status means.

    404 → ``NotFound``; 408/409/425/429 and 5xx → ``Busy``; anything else
    → ``Invalid``. 401/403 are the caller's (credentials differ per backend)
    and come here only as ``Invalid`` if it let them through.
    """
    status, payload = answer.status, answer.payload
    if 200 <= status < 300:
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except ValueError:
            raise CloudError(f"{operation} answered HTTP {status} with a body that is not JSON") from None
    fields, detail = read_error(payload)
    if status == 404:
        raise NotFound(operation, detail)
    if status in RETRIABLE or status >= 500:
        said = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        raise Busy(operation, detail or said or answer.reason or "no reason given", status)
    raise Invalid(operation, status, fields, detail)


def segment(uuid: str) -> str:
    """A UUID as one path segment. An empty one is refused: it would address the whole collection."""
    if not uuid:
        raise ValueError("an object UUID must not be empty")
    return quote(uuid, safe="")


def parsed(what: str, model: type[M], data: Any) -> M:
    """``data`` read as ``model``; ``CloudError`` (naming the first problem) when it cannot be."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CloudError(
            f"{what}: the API answered a {model.__name__} this client cannot read "
            f"({exc.error_count()} problems, first: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})"
        ) from None


class OneInstance:
    """A client owns the connection pool of one account: it is shared, never copied (``copy``,
    ``deepcopy`` and ``pickle`` raise), so no second pool or half-closed copy can exist."""

    def __copy__(self) -> NoReturn:
        name = type(self).__name__
        raise TypeError(
            f"a {name} owns the connection pool of one account and must not be copied; share the one instance"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> NoReturn:
        self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        self.__copy__()
