"""The parts of the control-plane setup that need no running binaries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from lb_operator.testing.cluster import BUILD_SCRIPT
from lb_operator.testing.controlplane import ControlPlane, ControlPlaneError


def _fake_binaries(folder: Path) -> Path:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        path = folder / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return folder


def test_missing_binary_is_reported_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    with pytest.raises(ControlPlaneError, match=r"etcd is missing: run tools/controlplane/build.sh"):
        ControlPlane(binaries=tmp_path, workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_serving_certificate_names_loopback_and_admin_is_a_system_master(tmp_path: Path) -> None:
    plane = ControlPlane(binaries=_fake_binaries(tmp_path), workdir=tmp_path / "work")
    try:
        serving = x509.load_pem_x509_certificate((plane.certs / "apiserver.crt").read_bytes())
        names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

        kubeconfig = yaml.safe_load(plane.kubeconfig.read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{plane.apiserver_port}"
        admin_cert_path = Path(kubeconfig["users"][0]["user"]["client-certificate"])
        admin = x509.load_pem_x509_certificate(admin_cert_path.read_bytes())
        organizations = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert [attribute.value for attribute in organizations] == ["system:masters"]
        key_mode = Path(kubeconfig["users"][0]["user"]["client-key"]).stat().st_mode & 0o777
        assert key_mode == 0o600
    finally:
        plane.stop()
    assert not plane.workdir.exists()


def test_apiserver_binds_and_advertises_loopback_only(tmp_path: Path) -> None:
    plane = ControlPlane(binaries=_fake_binaries(tmp_path), workdir=tmp_path / "work")
    try:
        argv = plane._apiserver_argv()
        assert "--bind-address=127.0.0.1" in argv
        assert "--advertise-address=127.0.0.1" in argv
        assert "--endpoint-reconciler-type=none" in argv
        assert "--authorization-mode=RBAC" in argv
    finally:
        plane.stop()


def test_build_script_uses_kubebuilder_assets_and_builds_nothing(tmp_path: Path) -> None:
    assets = _fake_binaries(tmp_path)
    env = dict(os.environ, KUBEBUILDER_ASSETS=str(assets), PATH="/usr/bin:/bin")  # no Go on PATH
    result = subprocess.run([str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(assets)
