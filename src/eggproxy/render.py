"""Renderers: one model, two formats (PEP 503 HTML and PEP 691 JSON).

Pages served to clients link to files *relatively* (``<file>#sha256=…``) so
that the cache tree can be moved, served under any prefix or copied to an
air-gapped machine.  The same JSON renderer with ``relative=False`` stores
the upstream's view (absolute URLs) beside the rendered pages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from html import escape
from typing import Any, Final
from urllib.parse import quote

from packaging.utils import canonicalize_name

from eggproxy import jsoncodec
from eggproxy.model import DistFile, IndexEntry, IndexPage, ProjectPage
from eggproxy.names import PROVENANCE_SUFFIX, dist_version

# Hash preference for the URL fragment of PEP 503 (one fragment per link).
_FRAGMENT_HASHES: Final = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")
# What ``quote`` leaves as it is (RFC 3986 unreserved, and "/"): most file names.
_UNQUOTED: Final = re.compile(r"[A-Za-z0-9_.~/-]*")
_HTML_SPECIAL: Final = re.compile(r"[&<>\"']")


def _quote(name: str) -> str:
    # Per file of every page rendered: one regex scan instead of quote's per-byte work.
    return name if _UNQUOTED.fullmatch(name) else quote(name)


def _escape(text: str) -> str:
    # html.escape runs five replaces; most attribute values need none (issue 13).
    return escape(text) if _HTML_SPECIAL.search(text) else text


def _api_version(page: ProjectPage) -> str:
    # PEP 700 (1.1) makes ``size`` mandatory; PEP 708 (1.2) adds tracks and
    # alternate locations; PEP 792 (1.4) project status.  Claim only what this
    # page can honour.
    if any(f.size is None for f in page.files):
        return "1.0"
    if page.status is not None:
        return "1.4"
    if page.tracks or page.alternate_locations:
        return "1.2"
    return "1.1"


def _link(dist: DistFile, relative: bool) -> str:
    return _quote(dist.filename) if relative else dist.url


def _provenance_link(dist: DistFile, relative: bool) -> str:
    if relative:
        return _quote(dist.filename) + PROVENANCE_SUFFIX
    return dist.provenance or ""


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
    files = [_json_items(dist)[0 if relative else 1] for dist in page.files]
    return _json_page(page, files)


def _json_page(page: ProjectPage, files: list[dict[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = {"api-version": _api_version(page)}
    if page.last_serial is not None:
        meta["_last-serial"] = page.last_serial
    if page.tracks:
        meta["tracks"] = list(page.tracks)
    if page.sources:
        # Which configured source(s) served the page; source names never hold "+".
        meta["_source"] = "+".join(page.sources)
    if page.withheld:
        # eggproxy.policy: how many files each rule left out, and when the next
        # held file will be listed (private keys: "_" prefix, PEP 691).
        meta["_withheld"] = dict(page.withheld)
    if page.next_release:
        meta["_next-release"] = page.next_release
    # PEP 691: "name" is the normalized name of the project.
    data: dict[str, Any] = {"meta": meta, "name": canonicalize_name(page.name), "files": files}
    data["versions"] = page_versions(page)
    if page.alternate_locations:
        data["alternate-locations"] = list(page.alternate_locations)
    if page.status is not None:
        status: dict[str, str] = {"status": page.status.value}
        if page.status_reason:
            status["reason"] = page.status_reason
        data["project-status"] = status
    return data


def _json_items(dist: DistFile) -> tuple[dict[str, Any], dict[str, Any]]:
    """A file's entry as served (relative links) and as stored (absolute, eggproxy's marks)."""
    item: dict[str, Any] = {
        "filename": dist.filename,
        "url": _link(dist, True),
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
    stored = item.copy()  # the same keys in the same order, so far
    stored["url"] = dist.url
    if dist.provenance:
        # PEP 740: served by the proxy beside the file (fetched on demand).
        item["provenance"] = _provenance_link(dist, True)
        stored["provenance"] = dist.provenance
    if dist.first_seen:  # when eggproxy first saw it
        stored["_first-seen"] = dist.first_seen
    if dist.source:  # kept in the stored copy, to fetch it again
        stored["_source"] = dist.source
    if dist.removed:  # gone upstream, still cached (see serve_removed)
        item["_removed"] = stored["_removed"] = dist.removed
    return item, stored


def project_json_bytes(page: ProjectPage, *, relative: bool = True) -> bytes:
    """The PEP 691 project page, encoded."""
    return jsoncodec.dumps(project_json(page, relative=relative))


def project_json_pair(shown: ProjectPage, stored: ProjectPage) -> tuple[bytes, bytes]:
    """The served JSON page of ``shown`` and the stored copy of ``stored``, encoded.

    The same as two :func:`project_json_bytes` calls; when nothing is withheld
    (``shown`` is ``stored``, the usual case) each file's entries are built once.
    """
    if shown is not stored:
        return project_json_bytes(shown), project_json_bytes(stored, relative=False)
    items = [_json_items(dist) for dist in shown.files]
    served = jsoncodec.dumps(_json_page(shown, [i[0] for i in items]))
    return served, jsoncodec.dumps(_json_page(stored, [i[1] for i in items]))


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
    if page.status is not None:  # PEP 792
        head.append(f'<meta name="pypi:project-status" content="{page.status.value}">')
        if page.status_reason:
            reason = escape(page.status_reason)
            head.append(f'<meta name="pypi:project-status-reason" content="{reason}">')
    lines = ["<!DOCTYPE html>", "<html>", "<head>", *head]
    if page.sources:
        served = escape("+".join(page.sources)).replace("--", "")
        lines.append(f"<!-- served by source: {served} -->")
    if page.withheld:
        rules = ", ".join(f"{rule} {count}" for rule, count in page.withheld)
        until = f"; next release {page.next_release}" if page.next_release else ""
        lines.append(f"<!-- withheld by policy: {rules}{until} -->")
    lines += [f"<title>Links for {name}</title>", "</head>", "<body>", f"<h1>Links for {name}</h1>"]
    for dist in page.files:
        # A quoted name holds no HTML special character: only the hash needs escaping.
        attrs = [f'href="{_quote(dist.filename)}{_escape(_fragment(dist.hashes))}"']
        if dist.requires_python:
            attrs.append(f'data-requires-python="{_escape(dist.requires_python)}"')
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
            value = _escape(value)
            attrs.append(f'data-core-metadata="{value}"')
            attrs.append(f'data-dist-info-metadata="{value}"')
        if dist.gpg_sig is not None:
            attrs.append(f'data-gpg-sig="{"true" if dist.gpg_sig else "false"}"')
        if dist.provenance:  # PEP 740
            attrs.append(f'data-provenance="{escape(_provenance_link(dist, True))}"')
        lines.append(f"<a {' '.join(attrs)}>{_escape(dist.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


_INDEX_HTML_HEAD: Final = (
    b"<!DOCTYPE html>\n<html>\n<head>\n"
    b'<meta name="pypi:repository-version" content="1.1">\n'
    b"<title>Simple index</title>\n</head>\n<body>\n"
)
_INDEX_HTML_TAIL: Final = b"</body>\n</html>\n"
_BATCH: Final = 1024  # projects rendered per chunk


def index_pages(
    entries: Iterable[IndexEntry], last_serial: Callable[[], int | None] = lambda: None
) -> Iterator[tuple[bytes, bytes]]:
    """The root page in both formats, one pass over its projects: (HTML, JSON) chunks.

    Streams: a root page of 750,000 projects is rendered a batch at a time.
    The JSON page's ``meta`` comes last, so that the upstream's own serial,
    known only once its page has been read, can be carried through.
    """
    html: list[str] = []
    json_parts: list[str] = []
    yield _INDEX_HTML_HEAD, b'{"projects":['
    first = True
    for name, serial in entries:
        html.append(f'<a href="{escape(canonicalize_name(name))}/">{escape(name)}</a><br>\n')
        item: dict[str, Any] = {"name": name}
        if serial is not None:
            item["_last-serial"] = serial  # PEP 691 root, as the real index gives it
        json_parts.append(("" if first else ",") + json.dumps(item, separators=(",", ":")))
        first = False
        if len(html) >= _BATCH:
            yield "".join(html).encode(), "".join(json_parts).encode()
            html.clear()
            json_parts.clear()
    meta: dict[str, Any] = {"api-version": "1.1"}
    serial = last_serial()
    if serial is not None:
        meta["_last-serial"] = serial
    tail = '],"meta":' + json.dumps(meta, separators=(",", ":")) + "}"
    yield "".join(html).encode() + _INDEX_HTML_TAIL, ("".join(json_parts) + tail).encode()


def index_json_bytes(index: IndexPage) -> bytes:
    """The PEP 691 root page, encoded."""
    entries = ((name, None) for name in index.projects)
    return b"".join(j for _h, j in index_pages(entries, lambda: index.last_serial))


def index_html(index: IndexPage) -> bytes:
    """The PEP 503 root page: one relative link per project."""
    return b"".join(h for h, _j in index_pages((name, None) for name in index.projects))
