"""Octavia and Keystone behind TLS signed by a private CA, as OpenStack clouds often are: the client
trusts that CA when ``OS_CACERT`` (clouds.yaml: ``cacert``) names it, and otherwise says so and what to set.

Octavia's and Keystone's test servers speak plain HTTP; a TLS terminator in
the test (Python's own ``ssl``, a certificate for 127.0.0.1 from a CA made
here) stands in front of them, as a load balancer or ingress does in a cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lb_operator.cloud import Busy
from lb_operator.cloud.backends import open_backend
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.testing.controlplane import issue_certificate
from lb_operator.testing.octavia import PROJECT, OctaviaProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA, a serving certificate for 127.0.0.1 it signed, and a CA nobody signed with."""
    directory = tmp_path_factory.mktemp("pki")
    ca = issue_certificate("private-cloud-ca")
    ca_cert, _ = ca.write(directory, "ca")
    cert, key = issue_certificate("octavia", issuer=ca, server_names=["127.0.0.1"]).write(directory, "server")
    other, _ = issue_certificate("another-ca").write(directory, "other-ca")
    return {"ca": ca_cert, "cert": cert, "key": key, "other": other}


@contextlib.asynccontextmanager
async def tls_in_front_of(url: str, pki: dict[str, Path]) -> AsyncIterator[str]:
    """An https:// URL whose connections are TLS-terminated and piped to the plain ``url``."""
    target = urlsplit(url)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}{target.path}"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctaviaProcess]:
    log = tmp_path_factory.mktemp("tls") / "octavia-keystone.log"
    server = OctaviaProcess(log, latency=0.05, lb_ready_delay=0.3, keystone=True)
    yield server
    server.stop()


async def test_a_noauth_octavia_behind_a_private_ca_is_trusted_with_os_cacert_only(
    octavia: OctaviaProcess, pki: dict[str, Path]
) -> None:
    async with tls_in_front_of(octavia.url, pki) as url:
        trusting = await open_backend(
            "octavia", url, None, 10.0, 2, {"OS_PROJECT_ID": PROJECT, "OS_CACERT": str(pki["ca"])}
        )
        try:
            assert isinstance(await trusting.list_load_balancers(), list)
        finally:
            await trusting.close()
        for env in ({"OS_PROJECT_ID": PROJECT}, {"OS_PROJECT_ID": PROJECT, "OS_CACERT": str(pki["other"])}):
            untrusting = await open_backend("octavia", url, None, 10.0, 2, env)
            try:
                with pytest.raises(Busy, match=r"TLS certificate is not trusted .*OS_CACERT"):
                    await untrusting.list_load_balancers()
            finally:
                await untrusting.close()


async def test_keystone_behind_a_private_ca_is_trusted_with_os_cacert_only(
    guarded: OctaviaProcess, pki: dict[str, Path]
) -> None:
    assert guarded.keystone is not None
    async with tls_in_front_of(guarded.keystone.url, pki) as auth_url:
        env = {**guarded.env(), "OS_AUTH_URL": auth_url}
        cloud = await open_backend("octavia", None, None, 10.0, 2, {**env, "OS_CACERT": str(pki["ca"])})
        assert isinstance(cloud, OctaviaClient)
        try:
            assert cloud.endpoint == guarded.url, "the endpoint did not come from Keystone's catalog"
            assert isinstance(await cloud.list_load_balancers(), list)
        finally:
            await cloud.close()
        with pytest.raises(Busy, match=r"Keystone's TLS certificate is not trusted .*OS_CACERT"):
            await open_backend("octavia", None, None, 10.0, 2, env)


async def test_a_ca_bundle_that_cannot_be_read_is_refused_at_start_up(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    for path, said in ((tmp_path / "missing.pem", "cannot read the CA bundle"), (not_pem, "holds no PEM")):
        env = {"OS_PROJECT_ID": PROJECT, "OS_CACERT": str(path)}
        with pytest.raises(ValueError, match=said):
            await open_backend("octavia", "https://127.0.0.1:9", None, 10.0, 2, env)
