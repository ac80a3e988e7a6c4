"""eggproxy's own log lines (not the access log): one format, set up by entry points."""

from __future__ import annotations

import logging
import sys
from typing import Final

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int = logging.INFO) -> None:
    """Send the ``eggproxy`` loggers' lines to stderr, once per process."""
    root = logging.getLogger("eggproxy")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
