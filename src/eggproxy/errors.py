"""The errors eggproxy raises, one hierarchy for every front end.

::

    EggproxyError
    ├── ConfigError            bad configuration (a key, its value, the file)
    ├── CannotListen           the server's address is taken or not ours
    ├── LoopDetected           a request that came through this eggproxy already (508)
    ├── BadRequest             a request no index could answer (400)
    │   └── InvalidName        a project or file name that is not valid
    ├── InsufficientStorage    the cache's disk is full (507)
    ├── NotFound               nothing there (404)
    │   ├── ProjectNotFound    the upstream does not know the project
    │   ├── FileNotListed      the project's page does not list that file
    │   └── FileWithheld       cached, but no longer offered (removed upstream, quarantined)
    │       └── FileHeld       not offered yet: released less than min_release_age ago
    ├── Forbidden              refused on purpose (403)
    │   └── FileBlocked        a deny entry or an OSV record of the blocklist names it
    └── UpstreamError          the upstream failed us (502)
        ├── UpstreamUnavailable  down, refused, timed out or 5xx (504/502)
        ├── MalformedPage        a page we cannot parse
        ├── IntegrityError       a download that does not match its declared hash or size
        └── RecentFailure        the attempt we waited on failed (its status and reason)

Front ends map each class to one HTTP status with :func:`http_status`.
"""

from __future__ import annotations


class EggproxyError(Exception):
    """Base class of every error eggproxy raises on purpose."""

    status = 500
    # What the access log marks an answer to this error with (issue 11: held, blocked).
    mark = "error"


class ConfigError(EggproxyError):
    """A configuration value is missing or wrong."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        path: str | None = None,
        section: str | None = None,
        line: int | None = None,
    ) -> None:
        self.key = key
        self.path = path
        self.section = section
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        # One line a person can act on: ``FILE: line N: [SECTION] KEY: what is wrong``.
        where = f"{self.path}: " if self.path else ""
        if self.line is not None:
            where += f"line {self.line}: "
        if self.section:
            where += f"[{self.section}] "
        what = f"{self.key}: " if self.key else ""
        return f"{where}{what}{self.args[0]}"


class LoopDetected(EggproxyError):
    """A request whose ``Via`` shows it passed this eggproxy: an upstream points back at us."""

    status = 508  # Loop Detected (RFC 5842)

    def __init__(self) -> None:
        super().__init__(
            "loop detected: this request came through this eggproxy already "
            "(an upstream's index points back here)"
        )


class CannotListen(EggproxyError):
    """``eggproxy serve`` cannot have its address to itself (in use, not assignable)."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"cannot listen on {address}: {reason}")


class BadRequest(EggproxyError):
    """The request cannot be answered by any index."""

    status = 400


class InvalidName(BadRequest):
    """A project or file name that is not valid."""

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value
        super().__init__(f"invalid {kind} name: {value[:80]!r}")


class InsufficientStorage(EggproxyError):
    """The cache's file system is full (ENOSPC, EDQUOT): nothing more can be stored."""

    status = 507  # RFC 4918: the server cannot store what the request needs


class EvictedMeanwhile(EggproxyError):
    """A file was evicted (the cache limit) each time it was about to be sent."""

    status = 503  # transient: the next request fetches it again


class NotFound(EggproxyError):
    """Nothing is there."""

    status = 404


class ProjectNotFound(NotFound):
    """No upstream knows the project."""

    def __init__(self, project: str) -> None:
        self.project = project
        super().__init__(f"project not found: {project}")


class FileNotListed(NotFound):
    """The project's page does not list the file."""

    def __init__(self, project: str, filename: str) -> None:
        self.project = project
        self.filename = filename
        super().__init__(f"{filename} is not listed on the page of {project}")


class FileWithheld(NotFound):
    """A cached file that is no longer offered, and why."""

    def __init__(self, project: str, filename: str, reason: str) -> None:
        self.project = project
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename} of {project} is not offered: {reason}")


class FileHeld(FileWithheld):
    """A file released less than ``min_release_age`` ago: offered from ``until`` on."""

    mark = "held"

    def __init__(self, project: str, filename: str, reason: str, until: float) -> None:
        self.until = until
        super().__init__(project, filename, reason)


class Forbidden(EggproxyError):
    """Refused on purpose."""

    status = 403


class FileBlocked(Forbidden):
    """A file a deny entry or an OSV record names: never served, cached or not."""

    mark = "blocked"

    def __init__(self, project: str, filename: str, reason: str, record: str) -> None:
        self.project = project
        self.filename = filename
        self.reason = reason
        self.record = record
        super().__init__(f"{filename} of {project} is {reason}")


class UpstreamError(EggproxyError):
    """The upstream index did not give us what we need."""

    status = 502

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class UpstreamUnavailable(UpstreamError):
    """The upstream is down, refused the connection, timed out or answered 5xx."""

    def __init__(self, message: str, *, url: str | None = None, timeout: bool = False) -> None:
        self.timeout = timeout
        super().__init__(message, url=url)
        # A timeout is a gateway timeout; anything else a bad gateway.
        self.status = 504 if timeout else 502


class MalformedPage(UpstreamError):
    """An upstream page that cannot be parsed."""


class IntegrityError(UpstreamError):
    """A download whose bytes do not match the hash or size the upstream declared."""

    def __init__(self, filename: str, expected: str, actual: str, *, url: str | None = None):
        self.filename = filename
        self.expected = expected
        self.actual = actual
        super().__init__(f"{filename}: expected {expected}, got {actual}", url=url)


class RecentFailure(UpstreamError):
    """Another request's attempt, which this one waited for, failed moments ago.

    It carries that attempt's status and reason, so every waiter gets the
    same answer instead of starting an attempt of its own.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def http_status(error: BaseException) -> int:
    """Return the HTTP status a front end answers for ``error``."""
    if isinstance(error, EggproxyError):
        return error.status
    return 500
