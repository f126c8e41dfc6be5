"""The Helm chart on the real API server: it lints, renders, installs and uninstalls, its schema refuses
bad values, and its service account may do what the operator needs and nothing more."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lb_operator.testing import Cluster
from lb_operator.testing.cluster import REPO_ROOT
from lb_operator.testing.fleet import fleet, to_yaml
from lb_operator.testing.processes import (
    OperatorProcess,
    SimulatorProcess,
    custom_objects,
    is_ready,
    wait_for,
)

CHART = REPO_ROOT / "charts" / "lb-operator"
HELM_BUILD = REPO_ROOT / "tools" / "helm" / "build.sh"
IMAGE = ("--set", "image.repository=registry.example.com/lb-operator")
"""Every render and install names an image: the chart has no default (none is published)."""


@pytest.fixture(scope="session")
def helm() -> Path:
    """The Helm CLI, built from the Go module pinned in tools/helm (cached after the first build)."""
    built = subprocess.run([str(HELM_BUILD)], stdout=subprocess.PIPE, text=True, check=False, timeout=1800)
    assert built.returncode == 0, f"{HELM_BUILD} failed; see its output above"
    return Path(built.stdout.strip().splitlines()[-1])


def _helm(helm: Path, cluster: Cluster | None, *args: str) -> subprocess.CompletedProcess[str]:
    config = ["--kubeconfig", str(cluster.kubeconfig)] if cluster is not None else []
    return subprocess.run(
        [str(helm), *config, *args], capture_output=True, text=True, timeout=180, check=False
    )


def _render(helm: Path, *values: str, namespace: str = "lb-system") -> list[dict[str, object]]:
    rendered = _helm(helm, None, "template", "lbop", str(CHART), "-n", namespace, *IMAGE, *values)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def test_the_chart_lints_clean(helm: Path) -> None:
    linted = _helm(helm, None, "lint", "--strict", str(CHART), *IMAGE)
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicaCount=0", "replicaCount"),
        ("cloud.url=http://api.example.com/v1", "/cloud/url"),
        ("locks.scope.LoadBalancerPool=everything", "LoadBalancerPool"),
        ("locks.leaseDuration=1", "leaseDuration"),
        ("image.digest=sha256:short", "digest"),
        ("metrics.port=70000", "port"),
        ("replicas=3", "replicas"),  # a misspelt key is refused, not ignored
        ("cloud.url=http://localhost.evil.example/v1", "/cloud/url"),
        ("shutdownGrace=0", "shutdownGrace"),
        ("health.port=9090", "must differ"),
        ("cloud.backend=aws", "/cloud/backend"),
    ],
)
def test_the_values_schema_refuses_bad_values(helm: Path, value: str, complaint: str) -> None:
    rendered = _helm(helm, None, "template", "lbop", str(CHART), *IMAGE, "--set", value)
    assert rendered.returncode != 0, f"{value} was accepted"
    assert complaint in rendered.stderr, rendered.stderr


def test_an_install_that_names_no_image_is_refused_saying_what_to_set(helm: Path, crds: Cluster) -> None:
    refused = _helm(helm, crds, "install", "lbop", str(CHART), "-n", "lb-system", "--dry-run")
    assert refused.returncode != 0, "installed with no image: its pods would sit in ImagePullBackOff"
    for advice in ("image.repository is not set", "make image", "--set image.repository="):
        assert advice in refused.stderr, refused.stderr


def _readme_install() -> list[str]:
    """The arguments of the README's ``helm install`` command, as a user copies it."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("## Install", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    command = block.replace("\\\n", " ")
    line = next(line for line in command.splitlines() if line.strip().startswith("helm install"))
    return line.split()[2:]


def test_the_readmes_install_command_installs_as_written(helm: Path, crds: Cluster) -> None:
    arguments = _readme_install()
    assert "image.repository=registry.example.com/lb-operator" in arguments, arguments
    chart = [str(REPO_ROOT / a) if a == "charts/lb-operator" else a for a in arguments]
    done = _helm(helm, crds, "install", *chart, "--dry-run", "--set", "crds.enabled=false")
    assert done.returncode == 0, done.stderr
    manifest = done.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]
    rendered = [doc for doc in yaml.safe_load_all(manifest) if doc]
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]
    assert image == "registry.example.com/lb-operator:0.1.0"


@pytest.mark.parametrize(
    ("strategy", "wanted"),
    [
        ((), {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        (("--set", "updateStrategy=Recreate"), {"type": "Recreate"}),  # replicas of two versions never meet
    ],
)
def test_the_update_strategy_rolls_one_replica_at_a_time_or_recreates_them_all(
    helm: Path, strategy: tuple[str, ...], wanted: dict[str, object]
) -> None:
    deployment = next(d for d in _render(helm, *strategy) if d["kind"] == "Deployment")
    assert deployment["spec"]["strategy"] == wanted  # type: ignore[index]


def test_the_deployment_runs_hardened_replicas_that_know_who_they_are(helm: Path) -> None:
    documents = _render(helm)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    spec = deployment["spec"]  # type: ignore[index]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["LBOP_BACKEND"]["value"] == "cloudscale"
    assert "LBOP_CLOUD_URL" not in env  # the backend's own default: cloudscale's public API
    assert env["LBOP_CLOUD_TOKEN_FILE"]["value"].startswith("/var/run/secrets/")
    assert not any("TOKEN" in name and "value" in e and "FILE" not in name for name, e in env.items())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    kinds = {d["kind"] for d in documents}
    assert {"PodDisruptionBudget", "Service", "ClusterRole", "Role", "CustomResourceDefinition"} <= kinds
    assert not {"ServiceMonitor", "NetworkPolicy"} & kinds  # optional, off by default


def test_an_octavia_release_mounts_its_clouds_yaml_or_names_its_noauth_project(helm: Path) -> None:
    def operator_of(*values: str) -> tuple[dict[str, Any], dict[str, Any]]:
        deployment = next(d for d in _render(helm, *values) if d["kind"] == "Deployment")
        pod: dict[str, Any] = deployment["spec"]["template"]["spec"]  # type: ignore[index]
        return pod, {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}

    pod, env = operator_of("--set", "cloud.backend=octavia")
    assert env["LBOP_BACKEND"] == "octavia"
    assert env["OS_CLIENT_CONFIG_FILE"] == "/var/run/secrets/lb-operator/cloud/clouds.yaml"
    assert env["OS_CLOUD"] == "openstack"
    assert "LBOP_CLOUD_TOKEN_FILE" not in env
    (volume,) = [v for v in pod["volumes"] if v["name"] == "cloud-credentials"]
    assert volume["secret"]["secretName"] == "openstack-clouds"
    assert volume["secret"]["items"] == [{"key": "clouds.yaml", "path": "clouds.yaml"}]
    assert "OS_CACERT" not in env

    pod, env = operator_of(
        "--set", "cloud.backend=octavia", "--set", "cloud.octavia.cloudsSecret.caKey=ca.crt"
    )
    assert env["OS_CACERT"] == "/var/run/secrets/lb-operator/cloud/ca.pem"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "cloud-credentials"]
    assert volume["secret"]["items"] == [
        {"key": "clouds.yaml", "path": "clouds.yaml"},
        {"key": "ca.crt", "path": "ca.pem"},
    ]

    pod, env = operator_of(
        "--set",
        "cloud.backend=octavia",
        "--set",
        "cloud.url=http://127.0.0.1:9876",
        "--set",
        "cloud.octavia.projectId=p1",
    )
    assert (env["LBOP_CLOUD_URL"], env["OS_PROJECT_ID"]) == ("http://127.0.0.1:9876", "p1")
    assert "OS_CLOUD" not in env
    assert not [v for v in pod["volumes"] if v["name"] == "cloud-credentials"]
    assert not [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "cloud-credentials"]


def test_the_rendered_crds_are_the_repositorys_and_kept_on_uninstall(helm: Path) -> None:
    rendered = [d for d in _render(helm) if d["kind"] == "CustomResourceDefinition"]
    files = [yaml.safe_load(p.read_text()) for p in sorted((REPO_ROOT / "crds").glob("*.yaml"))]
    assert len(rendered) == len(files) == 5
    by_name = {d["metadata"]["name"]: d for d in rendered}  # type: ignore[index]
    for crd in files:
        assert by_name[crd["metadata"]["name"]]["spec"] == crd["spec"]
        annotations = by_name[crd["metadata"]["name"]]["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
    assert not [
        d for d in _render(helm, "--set", "crds.enabled=false") if d["kind"] == "CustomResourceDefinition"
    ]


def test_every_rendered_object_is_accepted_by_the_api_server(helm: Path, crds: Cluster) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    assert crds.kubectl("create", "namespace", namespace).returncode == 0
    values = [
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.kubernetesApiCIDRs={10.0.0.1/32}",
    ]
    rendered = _render(helm, *values, namespace=namespace)
    manifests = yaml.safe_dump_all(rendered)
    applied = crds.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == len(rendered), applied.stdout


@pytest.fixture
def installed(helm: Path, crds: Cluster) -> Iterator[tuple[str, str]]:
    """A release in a namespace of its own; the CRDs are the suite's, so the chart does not own them."""
    namespace, release = f"chart-{uuid.uuid4().hex[:6]}", f"lbop-{uuid.uuid4().hex[:4]}"
    done = _helm(
        helm,
        crds,
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        *IMAGE,
        "--set",
        "crds.enabled=false",
    )
    assert done.returncode == 0, done.stderr
    yield namespace, release
    _helm(helm, crds, "uninstall", release, "-n", namespace)


CAN_I = [
    # (verb, resource, where, allowed)
    ("patch", "loadbalancerpools.lboperator.dev/status", "any namespace", True),
    ("watch", "loadbalancers.lboperator.dev", "all namespaces", True),
    ("create", "events", "any namespace", True),
    ("list", "namespaces", "cluster", True),
    ("delete", "namespaces", "cluster", False),
    ("update", "leases.coordination.k8s.io", "its namespace", True),
    ("update", "leases.coordination.k8s.io", "another namespace", False),
    ("get", "secrets", "its namespace", False),
    ("list", "secrets", "all namespaces", False),
    ("delete", "deployments.apps", "its namespace", False),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "cluster", False),
    ("create", "pods", "its namespace", False),
    # Services of type LoadBalancer (services.enabled, the default)
    ("patch", "services/status", "any namespace", True),
    ("watch", "nodes", "cluster", True),
    ("watch", "endpointslices.discovery.k8s.io", "all namespaces", True),
    ("create", "loadbalancers.lboperator.dev", "any namespace", True),
    ("delete", "services", "any namespace", False),
    ("patch", "nodes", "cluster", False),
    ("get", "endpointslices.discovery.k8s.io", "any namespace", False),
]


def test_the_service_account_may_do_what_the_operator_needs_and_nothing_more(
    helm: Path, crds: Cluster, installed: tuple[str, str]
) -> None:
    namespace, release = installed
    account = f"system:serviceaccount:{namespace}:{release}-lb-operator"
    table = []
    for verb, resource, where, allowed in CAN_I:
        scope = {
            "any namespace": ["-n", "default"],
            "all namespaces": ["-A"],
            "its namespace": ["-n", namespace],
            "another namespace": ["-n", "default"],
            "cluster": [],
        }[where]
        asked = crds.kubectl("auth", "can-i", verb, resource, *scope, f"--as={account}")
        answer = asked.stdout.strip()
        table.append(f"{verb:7} {resource:48} {where:18} {answer}")
        assert answer == ("yes" if allowed else "no"), f"can-i {verb} {resource} in {where}: {answer}"
    print("\n".join(table))


def test_install_then_uninstall_leaves_nothing_behind_but_the_crds(
    helm: Path, crds: Cluster, installed: tuple[str, str]
) -> None:
    namespace, release = installed
    listed = _helm(helm, crds, "list", "-n", namespace, "-o", "json")
    assert [r["name"] for r in json.loads(listed.stdout)] == [release]
    made = crds.kubectl("get", "deploy,sa,role,rolebinding,svc,pdb", "-n", namespace, "-o", "name")
    kinds = sorted(line.split("/")[0] for line in made.stdout.splitlines() if "/default" not in line)
    assert kinds == [
        "deployment.apps",
        "poddisruptionbudget.policy",
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
        "service",
        "serviceaccount",
    ], made.stdout
    assert crds.kubectl("get", "clusterrole", f"{release}-lb-operator").returncode == 0

    removed = _helm(helm, crds, "uninstall", release, "-n", namespace)
    assert removed.returncode == 0, removed.stderr
    left = crds.kubectl("get", "deploy,sa,role,rolebinding,svc,pdb", "-n", namespace, "-o", "name")
    assert [line for line in left.stdout.splitlines() if "default" not in line] == []
    assert crds.kubectl("get", "clusterrole", f"{release}-lb-operator").returncode != 0
    assert crds.kubectl("get", "crd", "loadbalancers.lboperator.dev").returncode == 0


def test_the_operator_works_with_nothing_but_the_charts_permissions(
    crds: Cluster, installed: tuple[str, str], logs: Path
) -> None:
    """An operator process authenticated as the release's service account reconciles a fleet."""
    namespace, release = installed
    token = crds.kubectl("create", "token", f"{release}-lb-operator", "-n", namespace, "--duration=1h")
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(crds.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster_entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    account = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": "operator", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_entry["name"], "user": "operator"}}],
        "current-context": "operator",
    }
    kubeconfig = logs / "operator-kubeconfig.yaml"
    kubeconfig.write_text(yaml.safe_dump(account))
    as_operator = Cluster(kubeconfig=kubeconfig, kubectl_path=crds.kubectl_path)

    objects_namespace = f"chart-objects-{uuid.uuid4().hex[:6]}"
    assert crds.kubectl("create", "namespace", objects_namespace).returncode == 0
    simulator = SimulatorProcess(logs / "simulator.log", latency=0.02, lb_ready_delay=0.2)
    operator = OperatorProcess(
        as_operator,
        simulator,
        logs / "operator.log",
        namespace=namespace,  # its Leases where its Role allows them
        watch_namespaces=objects_namespace,
        identity="chart-operator",
        retry_delay=0.5,
        retry_delay_max=5,
    )
    try:
        manifests = fleet(objects_namespace, 2, 1, 1)
        applied = crds.kubectl("apply", "-f", "-", input=to_yaml(manifests))
        assert applied.returncode == 0, applied.stderr
        wait_for(
            "the fleet to be Ready",
            lambda: sum(is_ready(o) for o in custom_objects(crds, objects_namespace)) == len(manifests),
            120,
        )
        deleted = crds.kubectl("delete", "lboperator", "--all", "-n", objects_namespace, "--timeout=120s")
        assert deleted.returncode == 0, deleted.stderr
        assert simulator.list("load-balancers") == []
        log = (logs / "operator.log").read_text()
        assert "Forbidden" not in log, "the operator was refused something"
        assert " ERROR " not in log
    finally:
        operator.stop()
        simulator.stop()
