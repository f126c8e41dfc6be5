"""Where the Octavia client's credentials come from, and that no secret shows on the way.

Keystone itself is run in ``tests/integration/octavia/test_octavia_keystone.py``;
here only the reading of the settings, which needs no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lb_operator.cloud.credentials import KeystoneSettings, NoAuth

SECRET = "s3cret-value-never-shown"


def test_no_keystone_variables_mean_no_keystone() -> None:
    assert KeystoneSettings.from_env({"OS_PROJECT_ID": "p"}) is None


def test_an_application_credential_from_os_variables() -> None:
    settings = KeystoneSettings.from_env(
        {
            "OS_AUTH_URL": "https://keystone.example/v3",
            "OS_APPLICATION_CREDENTIAL_ID": "cred-1",
            "OS_APPLICATION_CREDENTIAL_SECRET": SECRET,
            "OS_REGION_NAME": "RegionTwo",
        }
    )
    assert settings is not None
    assert settings.auth_type == "v3applicationcredential"
    assert settings.options == {
        "auth_url": "https://keystone.example/v3",
        "application_credential_id": "cred-1",
    }
    assert settings.secrets["application_credential_secret"].get_secret_value() == SECRET
    assert (settings.region_name, settings.interface) == ("RegionTwo", "public")
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_a_password_from_os_variables_by_default() -> None:
    settings = KeystoneSettings.from_env(
        {
            "OS_AUTH_URL": "https://keystone.example/v3",
            "OS_USERNAME": "operator",
            "OS_PASSWORD": SECRET,
            "OS_PROJECT_NAME": "lb",
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
        }
    )
    assert settings is not None
    assert settings.auth_type == "password"
    assert settings.options["username"] == "operator"
    assert "password" not in settings.options
    assert settings.secrets["password"].get_secret_value() == SECRET


def test_an_unknown_plugin_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OS_AUTH_TYPE='kerberos-ish' is not a keystoneauth1 plugin"):
        KeystoneSettings.from_env({"OS_AUTH_URL": "https://k/v3", "OS_AUTH_TYPE": "kerberos-ish"})


def test_an_entry_of_clouds_yaml(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n"
        "  prod:\n"
        "    auth_type: v3applicationcredential\n"
        "    auth:\n"
        "      auth_url: https://keystone.example/v3\n"
        "      application_credential_id: cred-2\n"
        f"      application_credential_secret: {SECRET}\n"
        "    region_name: RegionOne\n"
        "    interface: internal\n"
        "    cacert: /etc/openstack/ca.pem\n"
    )
    settings = KeystoneSettings.from_env({"OS_CLOUD": "prod", "OS_CLIENT_CONFIG_FILE": str(clouds)})
    assert settings is not None
    assert settings.options == {
        "auth_url": "https://keystone.example/v3",
        "application_credential_id": "cred-2",
    }
    assert (settings.region_name, settings.interface) == ("RegionOne", "internal")
    assert settings.cacert == "/etc/openstack/ca.pem"
    with_env = {"OS_CLOUD": "prod", "OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CACERT": "/mounted/ca.pem"}
    assert KeystoneSettings.from_env(with_env).cacert == "/etc/openstack/ca.pem"  # type: ignore[union-attr]
    clouds.write_text(clouds.read_text().replace("    cacert: /etc/openstack/ca.pem\n", ""))
    # The chart's way: the CA beside the clouds.yaml, named by OS_CACERT.
    assert KeystoneSettings.from_env(with_env).cacert == "/mounted/ca.pem"  # type: ignore[union-attr]
    assert SECRET not in repr(settings)
    with pytest.raises(ValueError, match="has no cloud named 'staging'") as caught:
        KeystoneSettings.from_env({"OS_CLOUD": "staging", "OS_CLIENT_CONFIG_FILE": str(clouds)})
    assert SECRET not in str(caught.value)


def test_a_missing_clouds_yaml_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ValueError, match=r"no clouds\.yaml was found in .*nowhere\.yaml"):
        KeystoneSettings.from_env({"OS_CLOUD": "prod", "OS_CLIENT_CONFIG_FILE": str(missing)})


def test_an_entry_without_an_auth_url_is_refused(tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  prod:\n    auth:\n      username: x\n")
    with pytest.raises(ValueError, match="no auth_url"):
        KeystoneSettings.from_env({"OS_CLOUD": "prod", "OS_CLIENT_CONFIG_FILE": str(clouds)})


def test_noauth_needs_a_project() -> None:
    with pytest.raises(ValueError, match="OS_PROJECT_ID"):
        NoAuth("")


def test_a_plain_http_keystone_on_another_host_is_refused() -> None:
    with pytest.raises(ValueError, match="cleartext"):
        KeystoneSettings.from_env(
            {"OS_AUTH_URL": "http://keystone.example/v3", "OS_USERNAME": "u", "OS_PASSWORD": SECRET}
        )
    local = KeystoneSettings.from_env({"OS_AUTH_URL": "http://127.0.0.1:5000/v3", "OS_PASSWORD": SECRET})
    assert local is not None  # a Keystone on this host (the tests') may be plain http


def test_every_option_that_names_a_secret_is_kept_secret() -> None:
    settings = KeystoneSettings.from_env(
        {"OS_AUTH_URL": "https://k/v3", "OS_AUTH_TYPE": "v3oidcpassword", "OS_CLIENT_SECRET": SECRET}
    )
    assert settings is not None
    assert "client_secret" in settings.secrets
    assert SECRET not in str(settings)
    assert SECRET not in repr(settings)


def test_os_cacert_names_the_ca_bundle_and_is_no_plugin_option() -> None:
    env = {"OS_AUTH_URL": "https://keystone.example/v3", "OS_PASSWORD": SECRET, "OS_CACERT": "/ca.pem"}
    settings = KeystoneSettings.from_env(env)
    assert settings is not None
    assert settings.cacert == "/ca.pem"
    assert "cacert" not in settings.options
    without = KeystoneSettings.from_env({**env, "OS_CACERT": ""})
    assert without is not None
    assert without.cacert is None
