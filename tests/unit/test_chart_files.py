"""The chart ships the CRDs as files: the same bytes as crds/, so `helm install` and `kubectl apply -f crds/`
install the same API."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_charts_crds_are_the_same_bytes_as_the_repositorys() -> None:
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    charted = {
        p.name: p.read_bytes() for p in (ROOT / "charts" / "lb-operator" / "files" / "crds").glob("*.yaml")
    }
    assert ours, "no CRDs in crds/"
    assert charted == ours, "charts/lb-operator/files/crds/ differs from crds/: run `make crds`"
