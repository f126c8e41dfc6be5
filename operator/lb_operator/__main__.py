"""``python -m lb_operator``: the same as the ``lb-operator`` command."""

from lb_operator.cli import main

raise SystemExit(main())
