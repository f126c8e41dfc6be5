"""How to reach one cloudscale.ch account: checked once at construction, the token read at open."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

DEFAULT_BASE_URL = "https://api.cloudscale.ch/v1"
DEFAULT_TOKEN_ENV = "CLOUDSCALE_API_TOKEN"


class CloudscaleSettings(BaseModel):
    """Where the API is, where its token comes from, and how long a request may take.

    The token comes from, in this order: ``token`` (tests), ``token_file``
    (a mounted Secret: the usual way in a cluster), the environment variable
    named by ``token_env``. It is never logged, and validation errors never
    echo their input (``hide_input_in_errors``), so a misconfiguration cannot
    print it either.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="URL of the v1 API; default the public cloudscale.ch API. The simulator serves /v1 too.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="The API token itself. Prefer token_file or token_env, which keep it out of config.",
    )
    token_file: Path | None = Field(
        default=None,
        description="File holding the token (e.g. a mounted Secret); read when the client opens; "
        "surrounding whitespace is ignored. Default: unset.",
    )
    token_env: str = Field(
        default=DEFAULT_TOKEN_ENV,
        min_length=1,
        description="Environment variable holding the token when neither token nor token_file is set.",
    )
    request_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds: bound on one request, from sending it to the end of the answer.",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds: bound on opening a connection (counts toward request_timeout).",
    )
    connection_limit: int = Field(
        default=10, ge=1, description="Connections the client keeps open to the API at most."
    )
    token_recheck: float = Field(
        default=10.0,
        gt=0,
        description="Seconds: how often token_file is checked for a new token (a rotated Secret); "
        "a refused token makes the client check at once.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CloudscaleSettings:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if self.base_url.startswith("http://") and not is_loopback(self.base_url):
            raise ValueError(
                f"refusing to send the API token in cleartext to {urlsplit(self.base_url).hostname}: "
                "use an https:// URL (plain http:// is allowed only to a loopback address, e.g. the "
                "simulator on 127.0.0.1)"
            )
        if self.connect_timeout > self.request_timeout:
            raise ValueError(
                "need connect_timeout <= request_timeout, "
                f"got {self.connect_timeout} > {self.request_timeout}"
            )
        return self

    def token_stamp(self) -> tuple[int, int, int] | None:
        """What tells a rewritten token file from the one read before (inode, size, mtime); blocking.

        A mounted Secret is rotated by swapping a symlink: the inode changes.
        ``None`` when there is no token file or it cannot be read now.
        """
        if self.token_file is None:
            return None
        try:
            stat = self.token_file.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def read_token(self) -> SecretStr:
        """The token from the first configured source. Blocking (it may read a file): call it at start-up
        or through ``asyncio.to_thread``.

        Raises ``ValueError`` naming the source that was tried — never its content.
        """
        if self.token is not None:
            value = self.token.get_secret_value().strip()
            source = "the token setting"
        elif self.token_file is not None:
            try:
                value = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"cannot read the cloudscale API token from {self.token_file}: {exc.strerror}; "
                    "mount the Secret there or set token_file to where it is"
                ) from None
            source = f"the file {self.token_file}"
        else:
            value = os.environ.get(self.token_env, "").strip()
            source = f"the environment variable {self.token_env}"
        if not value:
            raise ValueError(f"no cloudscale API token in {source}; put the token there")
        return SecretStr(value)


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this host: ``localhost``, 127.0.0.0/8 or ::1."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OctaviaSettings(BaseModel):
    """Where Octavia is and how long a request may take; who we are is ``cloud.credentials``'s.

    ``base_url`` unset: the load-balancer endpoint comes from the Keystone
    catalog. Set with no Keystone credentials: a ``noauth`` Octavia, whose
    project ``credentials.NoAuth`` sends.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = Field(
        default=None,
        description="The load-balancer endpoint (its root: `/v2/lbaas/…` is appended); default: from the "
        "Keystone catalog.",
    )
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds: bound on one request.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds: bound on opening a connection.")
    connection_limit: int = Field(default=10, ge=1, description="Connections kept open to the API at most.")
    ca_file: Path | None = Field(
        default=None,
        description="A PEM bundle of the CAs to trust for Octavia's TLS instead of the system's store "
        "(OS_CACERT, or clouds.yaml's cacert).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OctaviaSettings:
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("the Octavia endpoint must start with http:// or https://")
        if self.connect_timeout > self.request_timeout:
            raise ValueError("need connect_timeout <= request_timeout")
        return self
