"""The operator's settings: safe defaults, and a bad value stops it at start naming the variable."""

from __future__ import annotations

import pytest

from lb_operator.cloud.backends import open_backend
from lb_operator.cloud.cloudscale import CloudscaleClient
from lb_operator.settings import OperatorSettings, SettingsError


async def test_the_default_cloud_is_cloudscale_over_https(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = OperatorSettings.from_env({})
    assert settings.backend == "cloudscale"
    monkeypatch.setenv("CLOUDSCALE_API_TOKEN", "a-token")
    cloud = await open_backend(settings.backend, settings.cloud_url, None, 30.0, 10, {})
    try:
        assert isinstance(cloud, CloudscaleClient)
        assert cloud.settings.base_url == "https://api.cloudscale.ch/v1"
    finally:
        await cloud.close()


async def test_octavia_without_keystone_or_an_endpoint_is_refused_saying_what_to_set() -> None:
    with pytest.raises(ValueError, match=r"OS_CLOUD.*LBOP_CLOUD_URL"):
        await open_backend("octavia", None, None, 30.0, 10, {})


async def test_a_noauth_octavia_needs_a_project() -> None:
    with pytest.raises(ValueError, match="OS_PROJECT_ID"):
        await open_backend("octavia", "http://127.0.0.1:9876", None, 30.0, 10, {})


def test_an_unknown_backend_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="LBOP_BACKEND"):
        OperatorSettings.from_env({"LBOP_BACKEND": "aws"})


@pytest.mark.parametrize("url", ["http://api.cloudscale.ch/v1", "http://10.1.2.3:8080/v1"])
def test_plain_http_to_another_host_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match=r"LBOP_CLOUD_URL: .*cleartext") as caught:
        OperatorSettings.from_env({"LBOP_CLOUD_URL": url})
    assert url not in str(caught.value)  # inputs are not echoed (another field could hold a secret)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/v1", "http://localhost:9/v1", "https://lb.example/v1"]
)
def test_https_or_a_loopback_simulator_is_accepted(url: str) -> None:
    assert OperatorSettings.from_env({"LBOP_CLOUD_URL": url}).cloud_url == url


def test_a_cross_field_problem_names_the_variables_involved() -> None:
    with pytest.raises(SettingsError, match="LBOP_IDENTITY/LBOP_SHARDING/LBOP_LOCKING"):
        OperatorSettings.from_env({"LBOP_LOCKING": "false"})


def test_a_number_out_of_range_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="LBOP_RESYNC_INTERVAL"):
        OperatorSettings.from_env({"LBOP_RESYNC_INTERVAL": "0"})
