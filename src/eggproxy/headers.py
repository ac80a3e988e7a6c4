"""Response headers every front end sends, right by construction for HTTP caches."""

from __future__ import annotations

import mimetypes
from typing import Final

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


def page_cache_control(max_age: int) -> str:
    """Pages may be reused by shared caches for the time left on their TTL."""
    return f"public, max-age={max(0, max_age)}"


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
