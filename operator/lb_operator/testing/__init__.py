"""Test and demo infrastructure: a real control plane started on loopback.

Never imported by the operator at run time.
"""

from lb_operator.testing.cluster import Cluster, open_cluster
from lb_operator.testing.controlplane import ControlPlane, ControlPlaneError

__all__ = ["Cluster", "ControlPlane", "ControlPlaneError", "open_cluster"]
