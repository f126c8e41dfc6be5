"""The operator's custom resources (group ``lboperator.dev``): kinds, schemas and CRD manifests."""

from lb_operator.api.crds import crd, render, write
from lb_operator.api.kinds import ALL_KINDS, GROUP, VERSION, Kind

__all__ = ["ALL_KINDS", "GROUP", "VERSION", "Kind", "crd", "render", "write"]
