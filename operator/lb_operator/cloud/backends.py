"""The one place that knows every backend: picks, configures and opens the one ``LBOP_BACKEND`` names."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from lb_operator.cloud.cloudscale import CloudscaleClient
from lb_operator.cloud.credentials import Credentials, Keystone, KeystoneSettings, NoAuth
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.cloud.settings import DEFAULT_BASE_URL, CloudscaleSettings, OctaviaSettings

BackendName = Literal["cloudscale", "octavia"]


async def open_backend(
    backend: BackendName,
    url: str | None,
    token_file: Path | None,
    request_timeout: float,
    connections: int,
    env: Mapping[str, str] | None = None,
) -> CloudscaleClient | OctaviaClient:
    """The client of ``backend``, open. ``ValueError`` (its message says what to set) when it cannot be.

    cloudscale: ``url`` (default the public API) and its token (``token_file``,
    else ``CLOUDSCALE_API_TOKEN``). Octavia: Keystone credentials from
    ``OS_CLOUD``/``OS_CLIENT_CONFIG_FILE`` or ``OS_AUTH_URL`` and friends,
    the endpoint from the catalog unless ``url`` names it; ``url`` with no
    Keystone credentials is a noauth Octavia, for the project ``OS_PROJECT_ID``.
    """
    env = os.environ if env is None else env
    connect_timeout = min(5.0, request_timeout)
    if backend == "cloudscale":
        cloudscale = CloudscaleClient(
            CloudscaleSettings(
                base_url=url or DEFAULT_BASE_URL,
                token_file=token_file,
                request_timeout=request_timeout,
                connect_timeout=connect_timeout,
                connection_limit=connections,
            )
        )
        await cloudscale.open()
        return cloudscale
    keystone = await asyncio.to_thread(KeystoneSettings.from_env, env)
    credentials: Credentials
    if keystone is not None:
        credentials = Keystone(keystone, request_timeout)
    elif url:
        credentials = NoAuth(env.get("OS_PROJECT_ID", ""))
    else:
        raise ValueError(
            "Octavia needs Keystone credentials (OS_CLOUD with a clouds.yaml, or OS_AUTH_URL and the other "
            "OS_* variables), or LBOP_CLOUD_URL for an Octavia without Keystone (noauth)"
        )
    ca_file = keystone.cacert if keystone is not None else env.get("OS_CACERT")
    octavia = OctaviaClient(
        OctaviaSettings(
            base_url=url,
            ca_file=Path(ca_file) if ca_file else None,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            connection_limit=connections,
        ),
        credentials,
    )
    await octavia.open()
    return octavia
