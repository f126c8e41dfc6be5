"""The API client's session looks for a proxy only when the environment names one."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes.aio import client
from kubernetes.aio.client.rest import RESTClientObject

from lb_operator.handlers.runtime import session_options


async def _session_of(options: dict[str, object]) -> aiohttp.ClientSession:
    configuration = client.Configuration(host="https://127.0.0.1:6443")
    configuration.client_session_kwargs = options
    return RESTClientObject(configuration)._create_pool_manager()


async def test_without_a_proxy_in_the_environment_no_request_looks_for_one() -> None:
    session = await _session_of(session_options({"HOME": "/root"}))
    try:
        assert session.trust_env is False
    finally:
        await session.close()


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY"])
async def test_a_proxy_in_the_environment_is_honoured(name: str) -> None:
    session = await _session_of(session_options({name: "http://proxy.example:3128"}))
    try:
        assert session.trust_env is True
    finally:
        await session.close()
