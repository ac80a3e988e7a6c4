"""Error answers, the same on every front end: status, body and how loudly to log.

A 404 is an everyday answer (pip and uv probe names) and a 405 a client's
slip: both log at INFO; anything else is a failure an admin may want to see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eggproxy.errors import http_status


@dataclass(frozen=True)
class ErrorReply:
    """A plain-text error answer."""

    status: int
    message: str

    @property
    def body(self) -> bytes:
        return f"{self.status} {self.message}\n".encode()

    @property
    def level(self) -> int:
        return logging.INFO if self.status in (404, 405) else logging.WARNING

    def log(self, logger: logging.Logger, method: str, path: str) -> None:
        """One log line for this answer to ``method path``."""
        logger.log(self.level, "%s %s -> %d %s", method, path[:200], self.status, self.message)


def error_reply(error: BaseException) -> ErrorReply:
    """The answer to ``error`` (an :class:`~eggproxy.errors.EggproxyError`, else a 500)."""
    return ErrorReply(http_status(error), str(error))


METHOD_NOT_ALLOWED = ErrorReply(405, "method not allowed")
ALLOWED_METHODS = "GET, HEAD"
