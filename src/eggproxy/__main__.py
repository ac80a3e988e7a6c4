"""``python -m eggproxy``: the same as the ``eggproxy`` command."""

from eggproxy.cli import main

raise SystemExit(main())
