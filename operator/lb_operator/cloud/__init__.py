"""Cloud load-balancer backends behind one protocol.

``Backend`` is what reconcile code calls; ``CloudscaleClient`` implements it
for the cloudscale.ch v1 API and for the embedded simulator
(``lb_operator.simulator``), which speaks the same API; ``OctaviaClient`` for
OpenStack Octavia's v2 API. ``backends.open_backend`` opens the one
``LBOP_BACKEND`` names. Errors are
``Invalid`` (permanent), ``NotFound``, ``Busy`` and ``Unauthorized`` (retry later), all
``CloudError``. The request and answer models live in
``lb_operator.cloud.models``. See ``docs/backends.md``.
"""

from lb_operator.cloud.cloudscale import CloudscaleClient
from lb_operator.cloud.errors import Busy, CloudError, Invalid, NotFound, Unauthorized
from lb_operator.cloud.octavia import OctaviaClient
from lb_operator.cloud.protocol import Backend
from lb_operator.cloud.settings import CloudscaleSettings, OctaviaSettings

__all__ = [
    "Backend",
    "Busy",
    "CloudError",
    "CloudscaleClient",
    "CloudscaleSettings",
    "Invalid",
    "NotFound",
    "OctaviaClient",
    "OctaviaSettings",
    "Unauthorized",
]
