"""How the Octavia client proves who it is: Keystone tokens, or nothing (a ``noauth`` Octavia).

``Keystone``: keystoneauth1 — the library every OpenStack client uses —
with an application credential or a password (from ``OS_*`` variables or a
mounted ``clouds.yaml``), scoped to one project. It finds the load-balancer
endpoint in the token's service catalog. keystoneauth1 blocks (it speaks
HTTP through ``requests``), so every call of it runs in a thread, and only
when needed: the token is kept and sent until ``REFRESH_BEFORE`` seconds
before it expires, then one task fetches the next while the others wait for
it; a token Octavia refuses (401) is dropped and fetched afresh once.

``NoAuth``: an Octavia run with ``auth_strategy = noauth`` (tests, and
deployments that put their own proxy in front) takes the project from the
``X-Project-Id`` header and no token.

Neither ever writes a secret to a log, an error or a ``repr``; keystoneauth1's
own request log (which hashes tokens but shows bodies) is kept at WARNING.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lb_operator.cloud.errors import Busy, Unauthorized
from lb_operator.cloud.settings import is_loopback

logger = logging.getLogger(__name__)
logging.getLogger("keystoneauth").setLevel(logging.WARNING)

REFRESH_BEFORE = 300.0
"""Seconds before its expiry a token is replaced (keystoneauth1's own margin is 120 s); a token that
lives less than twice this is replaced at half its life, so a short-lived one is not fetched afresh
for every request."""


def is_secret(option: str) -> bool:
    """Whether a keystoneauth1 plugin option holds a secret (password, credential secret, token, …)."""
    return any(word in option for word in ("password", "secret", "token", "passcode"))


CLOUDS_YAML_PATHS = (
    Path("clouds.yaml"),
    Path.home() / ".config" / "openstack" / "clouds.yaml",
    Path("/etc/openstack/clouds.yaml"),
)
"""Where ``clouds.yaml`` is looked for unless ``OS_CLIENT_CONFIG_FILE`` names it (openstacksdk's order)."""


class Credentials(Protocol):
    """What the Octavia client needs of its authentication."""

    advice: str
    """What to do when Octavia refuses: part of the ``Unauthorized`` message."""

    async def open(self) -> str | None:
        """Authenticate once (a bad configuration fails here); the endpoint the catalog names, if any."""
        ...

    async def headers(self) -> dict[str, str]:
        """The headers of the next request (a token fetched afresh when it is about to expire)."""
        ...

    async def refused(self, sent: dict[str, str]) -> bool:
        """Octavia answered 401 to a request with the headers ``sent``: drop that token (unless another
        task replaced it already); whether a fresh one is worth a second try."""
        ...

    async def close(self) -> None: ...


class NoAuth:
    """A ``noauth`` Octavia: the project in ``X-Project-Id``, no token."""

    advice = "this Octavia expects no token (noauth); check LBOP_CLOUD_URL and OS_PROJECT_ID"

    def __init__(self, project_id: str) -> None:
        if not project_id:
            raise ValueError("an Octavia without Keystone (noauth) needs a project: set OS_PROJECT_ID")
        self._headers = {"X-Project-Id": project_id}

    def __repr__(self) -> str:
        return f"<NoAuth project {self._headers['X-Project-Id']}>"

    async def open(self) -> str | None:
        return None

    async def headers(self) -> dict[str, str]:
        return self._headers

    async def refused(self, sent: dict[str, str]) -> bool:
        return False

    async def close(self) -> None:
        return None


class KeystoneSettings(BaseModel):
    """A keystoneauth1 plugin and its options, from ``OS_*`` variables or a ``clouds.yaml`` entry.

    Secrets are ``SecretStr`` and validation errors never echo their input.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    auth_type: str = Field(
        default="password", description="keystoneauth1 plugin: password, v3applicationcredential, …"
    )
    options: dict[str, str] = Field(description="The plugin's options that are not secret (auth_url, …).")
    secrets: dict[str, SecretStr] = Field(default_factory=dict, description="password, credential secret.")
    region_name: str | None = Field(default=None, description="Region of the load-balancer endpoint.")
    interface: str = Field(default="public", description="Endpoint interface: public, internal or admin.")
    cacert: str | None = Field(
        default=None, description="A PEM bundle of the CAs to trust instead of the system's store."
    )
    source: str = Field(description="Where these came from, for messages (never their values).")

    def __repr__(self) -> str:
        return f"KeystoneSettings({self.auth_type} from {self.source})"

    def __str__(self) -> str:
        return repr(self)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeystoneSettings | None:
        """From ``OS_CLOUD`` (+ ``OS_CLIENT_CONFIG_FILE``) or ``OS_AUTH_URL`` and friends; ``None`` if
        neither is set (no Keystone). Blocking (it may read a file): call it at start-up."""
        env = os.environ if env is None else env
        if env.get("OS_CLOUD"):
            return cls.from_clouds_yaml(
                env["OS_CLOUD"], env.get("OS_CLIENT_CONFIG_FILE"), env.get("OS_CACERT") or None
            )
        if not env.get("OS_AUTH_URL"):
            return None
        from keystoneauth1 import loading

        auth_type = env.get("OS_AUTH_TYPE") or (
            "v3applicationcredential" if env.get("OS_APPLICATION_CREDENTIAL_ID") else "password"
        )
        try:
            loader: Any = loading.get_plugin_loader(auth_type)
        except Exception:  # keystoneauth1 raises its NoMatchingPlugin; any failure means the same
            raise ValueError(f"OS_AUTH_TYPE={auth_type!r} is not a keystoneauth1 plugin") from None
        names = {opt.dest: f"OS_{opt.dest.upper()}" for opt in loader.get_options()}
        found = {dest: env[name] for dest, name in names.items() if env.get(name)}
        return cls._split(
            auth_type,
            found,
            env.get("OS_REGION_NAME"),
            env.get("OS_INTERFACE"),
            env.get("OS_CACERT"),
            "OS_* variables",
        )

    @classmethod
    def from_clouds_yaml(cls, cloud: str, path: str | None, cacert: str | None = None) -> KeystoneSettings:
        """The entry ``cloud`` of a clouds.yaml; its ``cacert``, else ``cacert`` (``OS_CACERT``)."""
        candidates = [Path(path)] if path else list(CLOUDS_YAML_PATHS)
        for candidate in candidates:
            if candidate.is_file():
                try:
                    document = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
                except (OSError, yaml.YAMLError) as error:
                    raise ValueError(f"cannot read {candidate}: {type(error).__name__}") from None
                clouds = document.get("clouds") if isinstance(document, dict) else None
                entry = clouds.get(cloud) if isinstance(clouds, dict) else None
                if not isinstance(entry, dict):
                    raise ValueError(f"{candidate} has no cloud named {cloud!r} (OS_CLOUD)")
                auth = {
                    key: str(value) for key, value in (entry.get("auth") or {}).items() if value is not None
                }
                auth_type = str(entry.get("auth_type") or "password")
                source = f"{candidate} (cloud {cloud})"
                return cls._split(
                    auth_type,
                    auth,
                    entry.get("region_name"),
                    entry.get("interface"),
                    str(entry["cacert"]) if entry.get("cacert") else cacert,
                    source,
                )
        raise ValueError(
            f"OS_CLOUD={cloud!r} is set but no clouds.yaml was found in {', '.join(map(str, candidates))}"
        )

    @classmethod
    def _split(
        cls,
        auth_type: str,
        found: dict[str, str],
        region: str | None,
        interface: str | None,
        cacert: str | None,
        source: str,
    ) -> KeystoneSettings:
        auth_url = found.get("auth_url")
        if not auth_url:
            raise ValueError(f"no auth_url in {source}")
        if auth_url.startswith("http://") and not is_loopback(auth_url):
            raise ValueError(
                f"the Keystone auth_url in {source} is plain http:// to another host: the credentials would "
                "travel in cleartext; use https://"
            )
        return cls(
            auth_type=auth_type,
            options={key: value for key, value in found.items() if not is_secret(key)},
            secrets={key: SecretStr(value) for key, value in found.items() if is_secret(key)},
            region_name=region or None,
            interface=interface or "public",
            cacert=cacert or None,
            source=source,
        )


class Keystone:
    """Keystone v3 tokens for one project, refreshed before they expire; the catalog's endpoint."""

    def __init__(self, settings: KeystoneSettings, timeout: float) -> None:
        self._settings = settings
        self._timeout = timeout
        self._session: Any = None
        self._plugin: Any = None
        self._token: SecretStr | None = None
        self._refresh_at = 0.0  # event-loop time: the wall clocks of here and Keystone may differ
        self._fetching: asyncio.Lock | None = None
        self.advice = (
            f"check the Keystone credentials in {settings.source} (a rotated Secret is read at the "
            "operator's restart)"
        )

    def __repr__(self) -> str:
        return f"<Keystone {self._settings.auth_type} at {self._settings.options.get('auth_url')}>"

    async def open(self) -> str | None:
        self._fetching = asyncio.Lock()
        self._session, self._plugin = await asyncio.to_thread(self._make)
        await self._fetch(force=False)
        endpoint = await self._blocking(
            "find the load-balancer endpoint",
            lambda: self._session.get_endpoint(
                service_type="load-balancer",
                interface=self._settings.interface,
                region_name=self._settings.region_name,
            ),
        )
        if endpoint and str(endpoint).startswith("http://") and not is_loopback(str(endpoint)):
            raise ValueError(
                f"the Keystone catalog names a plain http:// load-balancer endpoint ({endpoint}): the token "
                "would travel in cleartext; set LBOP_CLOUD_URL to its https:// endpoint"
            )
        return str(endpoint) if endpoint else None

    def _make(self) -> tuple[Any, Any]:
        from keystoneauth1 import loading, session

        secrets = {key: value.get_secret_value() for key, value in self._settings.secrets.items()}
        try:
            loader: Any = loading.get_plugin_loader(self._settings.auth_type)
            plugin = loader.load_from_options(**self._settings.options, **secrets)
        except Exception as error:  # its MissingRequiredOptions & co. name the options, never their values
            raise ValueError(f"Keystone settings from {self._settings.source}: {error}") from None
        # verify: the CA bundle (requests reads it at each new connection), else the system's store.
        verify: str | bool = self._settings.cacert or True
        return session.Session(auth=plugin, timeout=self._timeout, verify=verify), plugin

    async def headers(self) -> dict[str, str]:
        if self._due():
            await self._fetch(force=False)
        token = self._token
        assert token is not None, "open() fetched the first token"
        return {"X-Auth-Token": token.get_secret_value()}

    def _due(self) -> bool:
        return self._token is None or asyncio.get_running_loop().time() >= self._refresh_at

    async def refused(self, sent: dict[str, str]) -> bool:
        token = self._token
        if token is not None and sent.get("X-Auth-Token") != token.get_secret_value():
            return True  # refused an older token: the current one was fetched since
        await self._fetch(force=True)
        return True

    async def _fetch(self, *, force: bool) -> None:
        """A fresh token, fetched by one task while the others wait for it."""
        assert self._fetching is not None, "open() first"
        seen = self._token
        async with self._fetching:
            if self._token is not seen or (not force and not self._due()):
                return  # another task fetched one meanwhile
            if self._token is not None:  # due or refused: a new one, not keystoneauth1's cached one
                await asyncio.to_thread(self._plugin.invalidate)
            asked_at = asyncio.get_running_loop().time()
            token, issued, expires = await self._blocking("get a Keystone token", self._token_now)
            life = (expires - issued).total_seconds()  # both Keystone's clock: no skew between them
            self._token = SecretStr(token)
            self._refresh_at = asked_at + life - min(REFRESH_BEFORE, life / 2)
            logger.info(
                "got a Keystone token from %s, valid until %s", self._settings.source, expires.isoformat()
            )

    def _token_now(self) -> tuple[str, datetime.datetime, datetime.datetime]:
        access = self._plugin.get_access(self._session)  # authenticates: its cached token was dropped
        issued, expires = access.issued, access.expires
        return str(access.auth_token), _aware(issued), _aware(expires)

    async def _blocking(self, what: str, call: Any) -> Any:
        """``call()`` in a thread; keystoneauth1's errors as ours (its messages carry no secret)."""
        from keystoneauth1 import exceptions

        try:
            return await asyncio.to_thread(call)
        except exceptions.Unauthorized as error:
            raise Unauthorized(
                f"{what} at {self._settings.options.get('auth_url')}",
                401,
                str(error),
                "Keystone",
                self.advice,
            ) from None
        except exceptions.SSLError as error:
            raise Busy(
                f"{what} at {self._settings.options.get('auth_url')}",
                f"Keystone's TLS certificate is not trusted ({error}); if its CA is a private one, name "
                "its bundle in OS_CACERT (clouds.yaml: cacert)",
            ) from None
        except exceptions.ClientException as error:
            raise Busy(
                f"{what} at {self._settings.options.get('auth_url')}", f"{type(error).__name__}: {error}"
            ) from None

    async def close(self) -> None:
        self._token = None
        session, self._session = self._session, None
        if session is not None:
            await asyncio.to_thread(session.session.close)  # keystoneauth1's requests session


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """Keystone's times are UTC; keystoneauth1 may hand them over without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
