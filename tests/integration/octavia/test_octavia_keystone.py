"""Octavia behind a real Keystone (PyPI ``keystone``, run locally): the operator authenticates with an
application credential, finds Octavia in the token's catalog, and replaces its token before it expires.

Tokens here last ``TOKEN_SECONDS``, so a test sees several of them: the
operator fetches the next one at half a token's life (``REFRESH_BEFORE``
caps that for long-lived tokens), once, not per request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lb_operator.cloud.backends import open_backend
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.testing import Cluster
from lb_operator.testing.cluster import REPO_ROOT
from lb_operator.testing.octavia import OctaviaProcess
from lb_operator.testing.processes import OperatorProcess, custom_objects, is_ready, wait_for

pytestmark = pytest.mark.integration

TOKEN_SECONDS = 8


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctaviaProcess]:
    """Octavia validating Keystone's tokens; Keystone's catalog naming Octavia."""
    log = tmp_path_factory.mktemp("keystone") / "octavia-keystone.log"
    server = OctaviaProcess(log, latency=0.05, lb_ready_delay=0.3, keystone=True, token_seconds=TOKEN_SECONDS)
    yield server
    server.stop()


def _issued_to_the_operator(octavia: OctaviaProcess) -> int:
    assert octavia.keystone is not None
    credential = octavia.keystone.made["application_credential_id"]
    by: dict[str, int] = octavia.keystone.stats()["by"]
    return by.get(f"credential:{credential}", 0)


async def test_the_client_finds_octavia_in_the_catalog_and_replaces_its_token_before_it_expires(
    guarded: OctaviaProcess,
) -> None:
    before = _issued_to_the_operator(guarded)
    cloud = await open_backend("octavia", None, None, 10.0, 10, guarded.env())
    assert isinstance(cloud, OctaviaClient)
    try:
        assert cloud.endpoint == guarded.url, "the endpoint did not come from Keystone's catalog"
        requests = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.5 * TOKEN_SECONDS / 2  # past two half-lives of a token
        while loop.time() < until:
            await cloud.list_load_balancers()  # each one validated by Octavia's keystonemiddleware
            requests += 1
    finally:
        await cloud.close()
    issued = _issued_to_the_operator(guarded) - before
    print(
        f"{requests} requests over {2.5 * TOKEN_SECONDS / 2:g}s took {issued} tokens ({TOKEN_SECONDS}s each)"
    )
    assert requests > 20, "too few requests to tell a token per request from a token per half-life"
    assert issued >= 3, "no token was replaced before it expired"
    # One at the start, then one per half-life (Keystone cuts a token's issue time to the second, so a
    # half-life seen from here may be up to a second shorter): far fewer than one per request.
    most = 2 + (2.5 * TOKEN_SECONDS / 2) / (TOKEN_SECONDS / 2 - 1)
    assert issued <= most, f"{issued} tokens: fetched more often than at half their life"


@pytest.fixture(scope="module")
def uncached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctaviaProcess]:
    """Octavia validating every token at Keystone (no cache), so a revoked token is refused at once."""
    log = tmp_path_factory.mktemp("keystone") / "octavia-keystone-uncached.log"
    server = OctaviaProcess(log, keystone=True, token_cache_seconds=-1)
    yield server
    server.stop()


async def test_a_token_revoked_in_keystone_is_refused_once_then_replaced(uncached: OctaviaProcess) -> None:
    guarded = uncached
    assert guarded.keystone is not None
    cloud = await open_backend("octavia", None, None, 10.0, 10, guarded.env())
    assert isinstance(cloud, OctaviaClient)
    try:
        await cloud.list_load_balancers()
        held = await cloud._credentials.headers()  # the token the client holds (a test's look inside)
        await asyncio.to_thread(guarded.keystone.revoke, held["X-Auth-Token"])
        refused = guarded.stats()["by_status"].get("401", 0)
        issued = _issued_to_the_operator(guarded)
        assert isinstance(await cloud.list_load_balancers(), list)  # refused, a new token, sent again
        assert guarded.stats()["by_status"].get("401", 0) == refused + 1, "Octavia did not refuse the token"
        assert _issued_to_the_operator(guarded) > issued, "no new token was fetched after the refusal"
        assert (await cloud._credentials.headers())["X-Auth-Token"] != held["X-Auth-Token"]
    finally:
        await cloud.close()


@pytest.fixture
def ns(crds: Cluster) -> str:
    name = f"oks-{uuid.uuid4().hex[:6]}"
    assert crds.kubectl("create", "namespace", name).returncode == 0
    return name


def test_the_operator_makes_the_example_tree_through_keystone_without_one_conflict(
    crds: Cluster, ns: str, guarded: OctaviaProcess, logs: Path
) -> None:
    env = guarded.env()
    assert "LBOP_CLOUD_URL" not in env  # Octavia comes from the catalog
    conflicts = guarded.stats()["conflicts"]
    operator = OperatorProcess(
        crds,
        guarded,
        logs / "operator.log",
        identity="operator-0",
        watch_namespaces=ns,
        retry_delay=0.5,
        retry_delay_max=5,
        ready_poll=0.2,
    )
    try:
        applied = crds.kubectl("apply", "-n", ns, "-f", str(REPO_ROOT / "examples" / "octavia"))
        assert applied.returncode == 0, applied.stderr

        def ready() -> bool:
            found = custom_objects(crds, ns)
            return len(found) == 11 and all(is_ready(o) for o in found)

        wait_for("the example tree to be Ready through Keystone", ready, 120, 0.5)
        assert guarded.stats()["conflicts"] == conflicts
        assert _issued_to_the_operator(guarded) >= 1
        log = (logs / "operator.log").read_text()
        assert guarded.keystone is not None
        for secret in ("application_credential_secret", "password", "octavia_password"):
            assert guarded.keystone.made[secret] not in log, f"the {secret} is in the operator's log"
    finally:
        operator.stop()
