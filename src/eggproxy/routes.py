"""Request routing shared by every front end: URL path in, a checked route out.

A route carries only validated, normalised names, so whatever a front end
does with it stays inside the cache directory.  Paths are taken *before*
percent-decoding where the front end can give them, and decoded here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

from eggproxy.errors import BadRequest, NotFound
from eggproxy.names import NormalizedName, normalize_project, validate_filename

MAX_PATH: Final = 1024

# PEP 691 content types, with the format each one is served from.
JSON_TYPES: Final = (
    "application/vnd.pypi.simple.v1+json",
    "application/vnd.pypi.simple.latest+json",
)
HTML_TYPES: Final = (
    "application/vnd.pypi.simple.v1+html",
    "application/vnd.pypi.simple.latest+html",
    "text/html",
)
CONTENT_TYPES: Final = {
    "json": "application/vnd.pypi.simple.v1+json",
    "html": "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class Route:
    """What a request asks for."""

    kind: Literal["root", "project", "file", "redirect"]
    project: NormalizedName | None = None
    filename: str | None = None
    location: str | None = None  # for redirects: the absolute path to go to


def route(path: str, prefix: str) -> Route:
    """Map a request path under ``prefix`` (e.g. ``/simple/``) to a :class:`Route`.

    Raises :class:`BadRequest` for hostile or invalid paths and
    :class:`NotFound` for paths outside the index.
    """
    if len(path) > MAX_PATH:
        raise BadRequest("path too long")
    try:
        decoded = unquote(path, errors="strict") if "%" in path else path
    except UnicodeDecodeError:
        raise BadRequest("path is not UTF-8") from None
    if "\x00" in decoded or "\\" in decoded:
        raise BadRequest("invalid characters in path")
    if decoded == prefix.rstrip("/"):
        return Route("redirect", location=prefix)
    if not decoded.startswith(prefix):
        raise NotFound("not under the index prefix")
    segments = decoded[len(prefix) :].split("/")
    if any(s in (".", "..") or s.startswith(".") for s in segments):
        raise BadRequest("dot segments are not allowed")
    if segments == [""]:
        return Route("root")
    if len(segments) > 2:
        raise NotFound("no such path")
    name = segments[0]
    project = normalize_project(name)
    if len(segments) == 1 or segments[1] == "":
        # PEP 503: one URL per project, the normalised one, ending in a slash.
        if name != project or len(segments) == 1:
            return Route("redirect", project=project, location=f"{prefix}{project}/")
        return Route("project", project=project)
    filename = validate_filename(segments[1])
    if name != project:
        return Route("redirect", project=project, location=f"{prefix}{project}/{filename}")
    return Route("file", project=project, filename=filename)


def choose_format(accept: str | None) -> tuple[str, str]:
    """PEP 691 negotiation: return (``"html"`` or ``"json"``, the Content-Type).

    No ``Accept`` (or nothing we offer accepted) gets HTML, the format every
    client understands; among equal quality values JSON wins, as its clients
    asked for it by name.
    """
    if not accept:
        return "html", CONTENT_TYPES["html"]
    best: tuple[float, int, str, str] | None = None
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media in JSON_TYPES:
            candidate = (quality, 2, "json", CONTENT_TYPES["json"])
        elif media in HTML_TYPES:
            content_type = CONTENT_TYPES["html"] if media == "text/html" else media
            candidate = (quality, 1, "html", content_type)
        elif media in ("*/*", "text/*"):
            candidate = (quality, 0, "html", CONTENT_TYPES["html"])
        else:
            continue
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return "html", CONTENT_TYPES["html"]
    return best[2], best[3]
