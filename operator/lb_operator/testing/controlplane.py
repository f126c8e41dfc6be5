"""A real kube-apiserver + etcd (+ kube-controller-manager) on loopback, started and stopped from Python.

Why this exists: the operator's correctness rests on API-server behaviour a
fake cannot reproduce faithfully — ``resourceVersion`` conflicts, watches,
structural-schema and CEL validation, RBAC, Leases. This starts the real
binaries the way controller-runtime's envtest does (secure port on 127.0.0.1,
RBAC, a client CA, service-account keys), with every certificate generated in
process by ``cryptography``, and nothing bound beyond loopback or dependent on
a default route. The API server alone can be stopped and started again on the
same etcd and port, to test how the operator rides out API-server trouble.
kube-controller-manager runs two controllers, the ones Services of
``type: LoadBalancer`` rely on: garbage collection (ownerReferences) and
EndpointSlices.

This is test and demo infrastructure: it blocks, and is never imported by the
operator itself.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "lbop-admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message carries the log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies.

    Without this, a test run killed with SIGKILL leaves etcd and kube-apiserver
    running and their ports taken.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


def issue_certificate(
    common_name: str,
    *,
    issuer: KeyPair | None = None,
    organizations: Sequence[str] = (),
    server_names: Sequence[str] = (),
    client: bool = False,
) -> KeyPair:
    """A certificate: a self-signed CA when no issuer is given, else a leaf."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    subject = x509.Name(attributes)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server_names:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    return KeyPair(key=key, cert=builder.sign(signer, hashes.SHA256()))


@dataclass
class _Process:
    """One child process whose output goes to a log file in the work dir."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it in order
            preexec_fn=_die_with_parent,
        )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.terminate()
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout=grace)
            self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> ControlPlaneError:
        code = self.popen.poll() if self.popen else None
        status = f"exited with {code}" if code is not None else "still running"
        return ControlPlaneError(
            f"{self.name} {what} ({status}); last lines of {self.log_path}:\n{self.log_tail()}"
        )


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on free loopback ports, with an admin kubeconfig.

    ``binaries`` is a folder holding ``etcd``, ``kube-apiserver``,
    ``kube-controller-manager`` and ``kubectl`` (see
    ``tools/controlplane/build.sh``). Use as a context
    manager, or call :meth:`start` and :meth:`stop`. All state lives in a
    temporary work dir that :meth:`stop` deletes.
    """

    binaries: Path
    startup_timeout: float = 120.0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lbop-controlplane-")))
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
            if not (self.binaries / name).is_file():
                shutil.rmtree(self.workdir, ignore_errors=True)
                raise ControlPlaneError(
                    f"{self.binaries / name} is missing: run tools/controlplane/build.sh, or set "
                    "KUBEBUILDER_ASSETS to a folder holding etcd, kube-apiserver, kube-controller-manager "
                    "and kubectl"
                )
        self.certs = self.workdir / "pki"
        self.certs.mkdir(parents=True, exist_ok=True)
        self._client_ca = issue_certificate("lbop-client-ca")
        self._serving_ca = issue_certificate("lbop-serving-ca")
        self._write_pki()
        self.kubeconfig = self.user_kubeconfig(ADMIN_USER, groups=["system:masters"])
        self._etcd = _Process("etcd", self._etcd_argv(), self.workdir / "etcd.log")
        self._apiserver = _Process("kube-apiserver", self._apiserver_argv(), self.workdir / "apiserver.log")
        argv, log = self._controller_manager_argv(), self.workdir / "controller-manager.log"
        self._controllers = _Process("kube-controller-manager", argv, log)
        self._stopped = False

    # -- public surface ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubectl_path(self) -> Path:
        return self.binaries / "kubectl"

    def start(self) -> None:
        """Start etcd, then kube-apiserver, then kube-controller-manager; return once the API server serves
        requests and the controller manager runs."""
        atexit.register(self.stop)
        try:
            self._etcd.start()
            self._wait_for_etcd(time.monotonic() + self.startup_timeout)
            self.start_apiserver()
            self._controllers.start()
            if not self._controllers.running():
                raise self._controllers.failure("did not start")
        except BaseException:
            self.stop()
            raise

    def start_apiserver(self) -> None:
        """Start kube-apiserver (again) on the same etcd and port; wait until it is ready."""
        self._apiserver.start()
        deadline = time.monotonic() + self.startup_timeout
        self._wait_for_readyz(deadline)
        self._wait_for_default_namespace(deadline)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only; etcd keeps the data for :meth:`start_apiserver`."""
        self._apiserver.stop()

    def stop(self) -> None:
        """Stop both processes and delete the work dir. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._controllers.stop()
        self._apiserver.stop()
        self._etcd.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as ``user`` in ``groups`` by client certificate."""
        pair = issue_certificate(user, issuer=self._client_ca, organizations=groups, client=True)
        cert_path, key_path = pair.write(self.certs, f"user-{user}")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lbop",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.certs / "serving-ca.crt"),
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(cert_path), "client-key": str(key_path)}}
            ],
            "contexts": [{"name": user, "context": {"cluster": "lbop", "user": user}}],
            "current-context": user,
        }
        path = self.workdir / f"kubeconfig-{user}.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # -- machinery --------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        self._client_ca.write(self.certs, "client-ca")
        self._serving_ca.write(self.certs, "serving-ca")
        serving = issue_certificate(
            "kube-apiserver",
            issuer=self._serving_ca,
            server_names=["localhost", "127.0.0.1", "kubernetes", "kubernetes.default"],
        )
        serving.write(self.certs, "apiserver")
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (self.certs / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (self.certs / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(self.binaries / "etcd"),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",  # a throw-away test store: durability costs time, buys nothing
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.certs
        return [
            str(self.binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            # Without these two, kube-apiserver derives an address from the
            # default route and publishes it in the `kubernetes` Endpoints.
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{self.apiserver_port}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
        ]

    def _controller_manager_argv(self) -> list[str]:
        return [
            str(self.binaries / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            "--controllers=garbagecollector,endpointslice",
            "--leader-elect=false",
            "--secure-port=0",  # nothing served: nothing bound, no authentication to set up
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        ]

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs / "serving-ca.crt"))
        context.load_cert_chain(self.certs / f"user-{ADMIN_USER}.crt", self.certs / f"user-{ADMIN_USER}.key")
        return context

    def _get(self, url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def _poll(self, process: _Process, what: str, deadline: float, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()`` with a deadline, failing fast if the process dies."""
        delay = 0.05
        while True:
            if not process.running():
                raise process.failure(f"died while waiting for {what}")
            with contextlib.suppress(OSError):
                if ready():
                    return
            if time.monotonic() >= deadline:
                raise process.failure(f"was not {what} after {self.startup_timeout:.0f}s")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def _wait_for_etcd(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.etcd_port}/health"

        def healthy() -> bool:
            status, body = self._get(url)
            return status == 200 and json.loads(body).get("health") == "true"

        self._poll(self._etcd, "healthy", deadline, healthy)

    def _wait_for_readyz(self, deadline: float) -> None:
        context = self._ssl_context()
        self._poll(
            self._apiserver, "ready", deadline, lambda: self._get(f"{self.url}/readyz", context)[0] == 200
        )

    def _wait_for_default_namespace(self, deadline: float) -> None:
        context = self._ssl_context()
        self._poll(
            self._apiserver,
            "serving namespace default",
            deadline,
            lambda: self._get(f"{self.url}/api/v1/namespaces/default", context)[0] == 200,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``make controlplane``: run one in the foreground until Ctrl-C."""
    import argparse
    import threading

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--binaries", type=Path, required=True, help="folder with etcd, kube-apiserver, kubectl"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ControlPlane(args.binaries) as plane:
        print(f"kube-apiserver ready at {plane.url}")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
