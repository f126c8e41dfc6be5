"""lb-operator: cloud load balancers as Kubernetes objects, with every mutating
cloud call serialized per load balancer across replicas by Lease mutexes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lb-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
