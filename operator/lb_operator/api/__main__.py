"""``python -m lb_operator.api [DIR]`` (``make crds``): write the CRD manifests into DIR (default crds)."""

from __future__ import annotations

import sys
from pathlib import Path

from lb_operator.api.crds import write

if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "crds")):
        print(path)
