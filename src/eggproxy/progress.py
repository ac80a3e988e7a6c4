"""A progress bar for ``eggproxy update`` on a terminal (tqdm; docs/decisions/0001).

Only a person watching gets one: the CLI uses it when stderr is a terminal,
so cron's mail and a redirected log hold the summary line alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import NoReturn, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


class Bar:
    """``update  12/40 [...] demo-pkg``: pages done of total, and the page just done."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._bar: tqdm[NoReturn] | None = None

    def start(self, total: int) -> None:
        self._bar = tqdm(total=total, desc="update", unit="page", file=self.stream, leave=True)

    def done(self, page: str, outcome: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(page, refresh=False)
            self._bar.update()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def progress_bar(stream: TextIO) -> Iterator[Bar]:
    """A :class:`Bar`, with log lines written above it instead of through it."""
    bar = Bar(stream)
    with logging_redirect_tqdm(loggers=[logging.getLogger()]):
        try:
            yield bar
        finally:
            bar.close()
