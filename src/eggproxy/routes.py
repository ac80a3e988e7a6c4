"""Request routing shared by every front end: URL path in, a checked route out.

A route carries only validated, normalised names, so whatever a front end
does with it stays inside the cache directory.  Paths are taken *before*
percent-decoding where the front end can give them, and decoded here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from eggproxy.errors import BadRequest, NotFound
from eggproxy.names import NormalizedName, normalize_project, validate_filename

MAX_PATH: Final = 1024


@dataclass(frozen=True)
class RootRoute:
    """The root page, listing every project."""


@dataclass(frozen=True)
class ProjectRoute:
    """A project's page, at its normalised URL."""

    project: NormalizedName


@dataclass(frozen=True)
class FileRoute:
    """A file (or its PEP 658 metadata) of a project, at the normalised URL."""

    project: NormalizedName
    filename: str


@dataclass(frozen=True)
class Redirect:
    """PEP 503: one URL per project; ``location`` is the absolute path to go to."""

    location: str


Route = RootRoute | ProjectRoute | FileRoute | Redirect


def route(path: str, prefix: str) -> Route:
    """Map a request path under ``prefix`` (e.g. ``/simple/``) to one of the :data:`Route` kinds.

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
        return Redirect(prefix)
    if not decoded.startswith(prefix):
        raise NotFound("not under the index prefix")
    segments = decoded[len(prefix) :].split("/")
    if any(s in (".", "..") or s.startswith(".") for s in segments):
        raise BadRequest("dot segments are not allowed")
    if segments == [""]:
        return RootRoute()
    if len(segments) > 2:
        raise NotFound("no such path")
    name = segments[0]
    project = normalize_project(name)
    if len(segments) == 1 or segments[1] == "":
        # PEP 503: one URL per project, the normalised one, ending in a slash.
        if name != project or len(segments) == 1:
            return Redirect(f"{prefix}{project}/")
        return ProjectRoute(project)
    filename = validate_filename(segments[1])
    if name != project:
        return Redirect(f"{prefix}{project}/{filename}")
    return FileRoute(project, filename)
