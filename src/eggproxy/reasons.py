"""Why an upstream request failed, in a few plain words for a 502/504 and a log line.

requests wraps the interesting part (a refused connection, an unknown host)
three levels deep, in messages that carry object reprs and addresses.  A
client and an admin need ``connection refused``, not that.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator

import requests


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (causes, contexts, urllib3's ``reason``), once each."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 32:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped += [a for a in current.args if isinstance(a, BaseException)]
        stack += [w for w in wrapped if isinstance(w, BaseException)]


def reason(exc: BaseException) -> str:
    """A short lower-case reason for a failed request, never an exception's internals."""
    chain = list(_chain(exc))
    for error in chain:
        if isinstance(error, socket.gaierror):
            return "host name not found"
        if isinstance(error, ssl.SSLCertVerificationError):
            return "TLS certificate not trusted"
        if isinstance(error, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, ConnectionResetError):
            return "connection reset"
        if isinstance(error, TimeoutError | socket.timeout):
            return "timed out"
    for error in chain:
        if isinstance(error, OSError) and error.errno:
            return os.strerror(error.errno).lower()
    for error in chain:
        if isinstance(error, requests.exceptions.ProxyError):
            return "the HTTP proxy failed"
        if isinstance(error, requests.exceptions.TooManyRedirects):
            return "too many redirects"
        if isinstance(error, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return "invalid URL"
        if isinstance(error, requests.exceptions.ChunkedEncodingError):
            return "connection broken mid-response"
    return "connection failed"
