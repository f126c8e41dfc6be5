"""The CRD manifests in crds/ are generated from one source and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from lb_operator.api import ALL_KINDS, crd, render

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_folder_matches_the_generator() -> None:
    on_disk = {path.name: path.read_text() for path in CRDS.glob("*.yaml")}
    assert on_disk == render(), "crds/ is stale: run `make crds` and commit the result"


def _fields_without_description(schema: dict[str, object], path: str) -> list[str]:
    missing = []
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, child in properties.items():
            assert isinstance(child, dict)
            if name not in ("apiVersion", "kind", "metadata") and not child.get("description"):
                missing.append(f"{path}.{name}")
            missing += _fields_without_description(child, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        missing += _fields_without_description(items, f"{path}[]")
    return missing


def test_every_field_is_described_for_kubectl_explain() -> None:
    for kind in ALL_KINDS:
        schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _fields_without_description(schema, kind.kind) == []


def test_every_kind_is_in_the_lboperator_category_with_a_short_name() -> None:
    for kind in ALL_KINDS:
        names = crd(kind)["spec"]["names"]
        assert names["categories"] == ["lboperator"]
        assert names["shortNames"] == [kind.short]
