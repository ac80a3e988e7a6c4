"""Renderers: one model, two formats (PEP 503 HTML and PEP 691 JSON).

Pages served to clients link to files *relatively* (``<file>#sha256=…``) so
that the cache tree can be moved, served under any prefix or copied to an
air-gapped machine.  The same JSON renderer with ``relative=False`` stores
the upstream's view (absolute URLs) beside the rendered pages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any, Final
from urllib.parse import quote

from packaging.utils import canonicalize_name

from eggproxy.model import DistFile, IndexPage, ProjectPage
from eggproxy.names import dist_version

# Hash preference for the URL fragment of PEP 503 (one fragment per link).
_FRAGMENT_HASHES: Final = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")


def _api_version(page: ProjectPage) -> str:
    # PEP 700 (1.1) makes ``size`` mandatory; PEP 708 (1.2) adds tracks and
    # alternate locations.  Claim only what this page can honour.
    if any(f.size is None for f in page.files):
        return "1.0"
    if page.tracks or page.alternate_locations:
        return "1.2"
    return "1.1"


def _link(dist: DistFile, relative: bool) -> str:
    return quote(dist.filename) if relative else dist.url


def _fragment(hashes: Mapping[str, str]) -> str:
    for name in _FRAGMENT_HASHES:
        if name in hashes:
            return f"#{name}={hashes[name]}"
    return ""


def page_versions(page: ProjectPage) -> list[str]:
    """PEP 700 ``versions``: the upstream's list, else read from the file names."""
    if page.versions is not None:
        return list(page.versions)
    versions = (dist_version(dist.filename) for dist in page.files)
    return list(dict.fromkeys(v for v in versions if v is not None))


def project_json(page: ProjectPage, *, relative: bool = True) -> dict[str, Any]:
    """The PEP 691 project page as a JSON-ready dict."""
    meta: dict[str, Any] = {"api-version": _api_version(page)}
    if page.last_serial is not None:
        meta["_last-serial"] = page.last_serial
    if page.tracks:
        meta["tracks"] = list(page.tracks)
    if page.sources:
        # Which configured source(s) served the page; source names never hold "+".
        meta["_source"] = "+".join(page.sources)
    files = []
    for dist in page.files:
        item: dict[str, Any] = {
            "filename": dist.filename,
            "url": _link(dist, relative),
            "hashes": dict(dist.hashes),
        }
        if dist.requires_python:
            item["requires-python"] = dist.requires_python
        if dist.yanked:
            item["yanked"] = dist.yanked
        if dist.core_metadata:
            metadata = (
                dict(dist.core_metadata)
                if isinstance(dist.core_metadata, Mapping)
                else dist.core_metadata
            )
            # PEP 714: both names, until every client reads the new one.
            item["core-metadata"] = metadata
            item["dist-info-metadata"] = metadata
        if dist.gpg_sig is not None:
            item["gpg-sig"] = dist.gpg_sig
        if dist.size is not None:
            item["size"] = dist.size
        if dist.upload_time is not None:
            item["upload-time"] = dist.upload_time
        if dist.source and not relative:  # kept in the stored copy, to fetch it again
            item["_source"] = dist.source
        files.append(item)
    # PEP 691: "name" is the normalized name of the project.
    data: dict[str, Any] = {"meta": meta, "name": canonicalize_name(page.name), "files": files}
    data["versions"] = page_versions(page)
    if page.alternate_locations:
        data["alternate-locations"] = list(page.alternate_locations)
    return data


def project_json_bytes(page: ProjectPage, *, relative: bool = True) -> bytes:
    """The PEP 691 project page, encoded."""
    return json.dumps(project_json(page, relative=relative), separators=(",", ":")).encode()


def project_html(page: ProjectPage) -> bytes:
    """The PEP 503 project page, with relative links."""
    name = escape(page.name)
    head = [f'<meta name="pypi:repository-version" content="{_api_version(page)}">']
    # PEP 708: repository metadata travels as meta tags in HTML.
    head += [f'<meta name="pypi:tracks" content="{escape(t)}">' for t in page.tracks]
    head += [
        f'<meta name="pypi:alternate-locations" content="{escape(a)}">'
        for a in page.alternate_locations
    ]
    lines = ["<!DOCTYPE html>", "<html>", "<head>", *head]
    if page.sources:
        served = escape("+".join(page.sources)).replace("--", "")
        lines.append(f"<!-- served by source: {served} -->")
    lines += [f"<title>Links for {name}</title>", "</head>", "<body>", f"<h1>Links for {name}</h1>"]
    for dist in page.files:
        attrs = [f'href="{escape(_link(dist, True))}{escape(_fragment(dist.hashes))}"']
        if dist.requires_python:
            attrs.append(f'data-requires-python="{escape(dist.requires_python)}"')
        if dist.yanked:
            reason = dist.yanked if isinstance(dist.yanked, str) else ""
            attrs.append(f'data-yanked="{escape(reason)}"')
        if dist.core_metadata:
            value = (
                _fragment(dist.core_metadata).lstrip("#") or "true"
                if isinstance(dist.core_metadata, Mapping)
                else "true"
            )
            # PEP 714: emit both attribute names.
            attrs.append(f'data-core-metadata="{escape(value)}"')
            attrs.append(f'data-dist-info-metadata="{escape(value)}"')
        if dist.gpg_sig is not None:
            attrs.append(f'data-gpg-sig="{"true" if dist.gpg_sig else "false"}"')
        lines.append(f"<a {' '.join(attrs)}>{escape(dist.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


def index_json_bytes(index: IndexPage) -> bytes:
    """The PEP 691 root page, encoded."""
    # PEP 700 adds nothing to the root page: 1.1, as the project pages say.
    meta: dict[str, Any] = {"api-version": "1.1"}
    if index.last_serial is not None:
        meta["_last-serial"] = index.last_serial
    projects = [{"name": name} for name in index.projects]
    return json.dumps({"meta": meta, "projects": projects}, separators=(",", ":")).encode()


def index_html(index: IndexPage) -> bytes:
    """The PEP 503 root page: one relative link per project."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        '<meta name="pypi:repository-version" content="1.1">',
        "<title>Simple index</title>",
        "</head>",
        "<body>",
    ]
    lines += [
        f'<a href="{escape(canonicalize_name(name))}/">{escape(name)}</a><br>'
        for name in index.projects
    ]
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()
