"""Response headers every front end sends, right by construction for HTTP caches."""

from __future__ import annotations

import mimetypes
from typing import Final

from eggproxy.errors import FileWithheld
from eggproxy.names import METADATA_SUFFIX, PROVENANCE_SUFFIX

# Files never change once cached: a shared cache may keep them for a year.
IMMUTABLE: Final = "public, max-age=31536000, immutable"

# PEP 658 metadata files are plain text (RFC 822 style).
METADATA_TYPE: Final = "text/plain; charset=utf-8"

# By suffix; the Apache vhost sends the same (eggproxy.deploy.apache).
FILE_TYPES: Final = {
    ".whl": "application/zip",
    ".egg": "application/zip",
    ".zip": "application/zip",
    ".tar.gz": "application/x-tar",
    ".tgz": "application/x-tar",
    ".tar.bz2": "application/x-tar",
}


# Errors and refusals (held, blocked, upstream failures) must not outlive the moment.
NO_STORE: Final = "no-store"
# eggproxy serves a cached page whatever the upstream says while it has one;
# a tier may do the same for at least a day (RFC 5861 stale-if-error).
MIN_STALE_IF_ERROR: Final = 86400


def page_cache_control(max_age: int, stale_while_revalidate: int = 0) -> str:
    """Pages may be reused by shared caches for the time left on their TTL.

    With ``stale_while_revalidate`` (eggproxy's own window) a tier is told
    what eggproxy itself does (RFC 5861): answer a page that far past its
    TTL at once while revalidating it, and keep answering it when the
    origin fails.
    """
    value = f"public, max-age={max(0, max_age)}"
    if stale_while_revalidate > 0:
        stale_if_error = max(stale_while_revalidate, MIN_STALE_IF_ERROR)
        value += (
            f", stale-while-revalidate={stale_while_revalidate}, stale-if-error={stale_if_error}"
        )
    return value


def error_cache_control(status: int, negative_ttl: int, error: BaseException | None = None) -> str:
    """An error answer: a 404 (no such project or file) for ``negative_ttl``, else never.

    eggproxy itself answers an unknown name 404 for ``negative_ttl`` seconds
    without asking again (negative.py); a tier may do the same.  Held and
    blocked files, upstream failures and every other error are ``no-store``:
    a hold ends, a block is lifted, the link comes back.
    """
    if status == 404 and negative_ttl > 0 and not isinstance(error, FileWithheld):
        return f"public, max-age={negative_ttl}"
    return NO_STORE


def file_content_type(filename: str) -> str:
    """The Content-Type of a cached file (PEP 658 metadata is plain text)."""
    if filename.endswith(METADATA_SUFFIX):
        return METADATA_TYPE
    if filename.endswith(PROVENANCE_SUFFIX):  # PEP 740: a JSON provenance object
        return "application/json"
    for suffix, content_type in FILE_TYPES.items():
        if filename.endswith(suffix):
            return content_type
    guessed, _encoding = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def stale_warning(reason: str) -> str:
    """A ``Warning`` header (RFC 7234 code 110) for a page served stale."""
    reason = reason.replace('"', "'").replace("\r", " ").replace("\n", " ")[:200]
    return f'110 eggproxy "Response is Stale: {reason}"'
