"""Pure parsers: PEP 503 HTML and PEP 691 JSON text in, model objects out.

No I/O here; :mod:`eggproxy.sources.remote` fetches, these functions only read
text.  Anything that does not follow the specs closely enough to be served
again raises :class:`~eggproxy.errors.MalformedPage`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator, Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import ijson

from eggproxy import jsoncodec
from eggproxy.errors import MalformedPage
from eggproxy.model import DistFile, IndexEntry, IndexPage, ProjectPage, ProjectStatus

# --- HTML (PEP 503, with PEP 592/658/708/714 attributes) -------------------


class _AnchorCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: list[tuple[str, str]] = []
        self.base: str | None = None
        self.tags_seen = 0
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags_seen += 1
        values = dict(attrs)
        if tag == "a":
            self._current, self._text = values, []
        elif tag == "meta" and values.get("name") and values.get("content") is not None:
            self.meta.append((str(values["name"]), str(values["content"])))
        elif tag == "base" and values.get("href") and self.base is None:
            self.base = values["href"]

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((self._current, "".join(self._text).strip()))
            self._current = None


def _collect(text: str) -> _AnchorCollector:
    collector = _AnchorCollector()
    try:
        collector.feed(text)
        collector.close()
    except (AssertionError, ValueError) as exc:  # html.parser's own complaints
        raise MalformedPage(f"unparseable HTML: {exc}") from None
    if collector.tags_seen == 0:
        raise MalformedPage("not an HTML page: no tags at all")
    _check_repository_version(collector.meta)
    return collector


def _check_repository_version(meta: list[tuple[str, str]]) -> None:
    # PEP 629: a client must refuse a major version it does not know.
    for name, content in meta:
        if name == "pypi:repository-version" and not content.strip().startswith("1."):
            raise MalformedPage(f"unsupported repository version {content!r}")


def _metadata_attr(value: str | None) -> bool | dict[str, str]:
    """PEP 658/714: ``true`` or ``<hashname>=<digest>``."""
    if value is None:
        return False
    name, sep, digest = value.partition("=")
    if sep and name and digest:
        return {name.strip().lower(): digest.strip()}
    return True


def project_from_html(
    text: str, base_url: str, name: str, *, source: str | None = None
) -> ProjectPage:
    """Parse a PEP 503 project page fetched from ``base_url`` (``source`` marks its files)."""
    collector = _collect(text)
    base = urljoin(base_url, collector.base) if collector.base else base_url
    files = []
    for attrs, label in collector.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(base, href))
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or label
        hashes = {}
        hash_name, sep, digest = fragment.partition("=")
        if sep and hash_name and digest:
            hashes[hash_name.lower()] = digest
        yanked: bool | str = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        # PEP 714: data-core-metadata is the name; data-dist-info-metadata the old one.
        metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        gpg = attrs.get("data-gpg-sig")
        provenance = attrs.get("data-provenance")  # PEP 740
        files.append(
            DistFile(
                filename=filename,
                url=url,
                hashes=hashes,
                requires_python=attrs.get("data-requires-python") or None,
                yanked=yanked,
                core_metadata=_metadata_attr(metadata),
                gpg_sig=None if gpg is None else gpg.lower() == "true",
                provenance=urljoin(base, provenance) if provenance else None,
                source=source,
            )
        )
    meta = collector.meta
    values = dict(meta)
    return ProjectPage(
        name=name,
        files=tuple(files),
        tracks=tuple(c for n, c in meta if n == "pypi:tracks"),
        alternate_locations=tuple(c for n, c in meta if n == "pypi:alternate-locations"),
        # PEP 792: the status and its reason travel as meta tags in HTML.
        status=_status(values.get("pypi:project-status")),
        status_reason=values.get("pypi:project-status-reason") or None,
    )


def _status(value: object) -> ProjectStatus | None:
    """A PEP 792 status; an unknown one is taken as no marker (PEP 792: active)."""
    if not isinstance(value, str):
        return None
    try:
        return ProjectStatus(value.strip().lower())
    except ValueError:
        return None


def index_from_html(text: str) -> IndexPage:
    """Parse a PEP 503 root page: the anchor texts are the project names."""
    collector = _collect(text)
    return IndexPage(projects=tuple(label for _attrs, label in collector.anchors if label))


class _NameCollector(HTMLParser):
    """Anchor texts of a root page, handed out as the parser reaches them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.names: list[str] = []
        self.meta: list[tuple[str, str]] = []
        self.tags_seen = 0
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags_seen += 1
        if tag == "a":
            self._text = []
        elif tag == "meta":
            values = dict(attrs)
            if values.get("name") and values.get("content") is not None:
                self.meta.append((str(values["name"]), str(values["content"])))

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None:
            name = "".join(self._text).strip()
            if name:
                self.names.append(name)
            self._text = None


def iter_index_html(chunks: Iterable[bytes], encoding: str = "utf-8") -> Iterator[IndexEntry]:
    """Stream a PEP 503 root page: its project names as the bytes arrive.

    The whole page is never held: a root page of 750,000 projects is tens of
    megabytes, and only one chunk and the names of that chunk are in memory.
    """
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise MalformedPage(f"unknown page encoding {encoding}") from None
    collector = _NameCollector()
    checked = False
    try:
        for chunk in chunks:
            collector.feed(decoder.decode(chunk))
            if not checked and collector.tags_seen:
                _check_repository_version(collector.meta)
                checked = bool(collector.names)
            yield from ((name, None) for name in collector.names)
            collector.names.clear()
        collector.feed(decoder.decode(b"", final=True))
        collector.close()
    except (AssertionError, ValueError) as exc:  # html.parser's and the decoder's complaints
        raise MalformedPage(f"unparseable HTML: {exc}") from None
    if collector.tags_seen == 0:
        raise MalformedPage("not an HTML page: no tags at all")
    _check_repository_version(collector.meta)
    yield from ((name, None) for name in collector.names)


class _Reader:
    """A file-like ``read`` over an iterator of chunks, for ijson."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        # ijson reads 0 bytes first to tell bytes from text: give nothing away then.
        if size == 0:
            return b""
        data = self._rest or next(self._chunks, b"")
        if 0 < size < len(data):
            data, self._rest = data[:size], data[size:]
        else:
            self._rest = b""
        return data


def iter_index_json(chunks: Iterable[bytes], meta: dict[str, Any]) -> Iterator[IndexEntry]:
    """Stream a PEP 691 root page: each project's name and ``_last-serial``.

    ``meta`` is filled with the page's ``meta`` keys as they are read (they
    may come before or after the projects).  One project at a time is in
    memory, parsed by ijson's C backend.
    """
    name: str | None = None
    serial: int | None = None
    try:
        for prefix, event, value in ijson.parse(_Reader(chunks)):
            if prefix == "projects.item":
                if event == "start_map":
                    name, serial = None, None
                elif event == "end_map":
                    if not isinstance(name, str):
                        raise MalformedPage("projects[].name: missing")
                    yield name, serial
            elif prefix == "projects.item.name":
                if event != "string":
                    raise MalformedPage("projects[].name: not a string")
                name = value
            elif prefix == "projects.item._last-serial" and event == "number":
                serial = int(value)
            elif prefix.startswith("meta.") and event in ("string", "number"):
                meta[prefix.removeprefix("meta.")] = value
    except ijson.JSONError as exc:
        raise MalformedPage(f"invalid JSON: {exc}") from None
    if not str(meta.get("api-version", "")).startswith("1."):
        raise MalformedPage("JSON page has no supported meta.api-version")


# --- JSON (PEP 691, with PEP 592/658/700/708/714 keys) ---------------------


def _load_json(text: str) -> dict[str, Any]:
    try:
        data = jsoncodec.loads(text)
    except ValueError as exc:
        raise MalformedPage(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedPage("JSON page is not an object")
    meta = data.get("meta")
    if not isinstance(meta, dict) or not str(meta.get("api-version", "")).startswith("1."):
        raise MalformedPage("JSON page has no supported meta.api-version")
    return data


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise MalformedPage(f"{what}: unexpected {type(value).__name__}")
    return value


def _json_metadata(value: Any, what: str) -> bool | dict[str, str]:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    mapping = _expect(value, dict, what)
    return {str(k).lower(): str(v) for k, v in mapping.items()}


def _absolute(base_url: str, url: str) -> str:
    """``url`` resolved against the page, without its fragment (RFC 3986)."""
    # Most pages link absolutely: skip urljoin's parse (issue 13, a third of a page's parse)
    # when there is nothing to resolve: no dot segment, no fragment.
    if url.startswith(("https://", "http://")) and "/." not in url and "#" not in url:
        return url
    return urldefrag(urljoin(base_url, url))[0]


def _json_file(item: Any, base_url: str, source: str | None) -> DistFile:
    # Once per file of every page miss: isinstance checks inline, one dict lookup each.
    if not isinstance(item, dict):
        raise MalformedPage(f"files[]: unexpected {type(item).__name__}")
    get = item.get
    filename = _expect(get("filename"), str, "files[].filename")
    url = get("url")
    if not isinstance(url, str):
        raise MalformedPage(f"{filename}: url: unexpected {type(url).__name__}")
    hashes = get("hashes", {})
    if not isinstance(hashes, dict):
        raise MalformedPage(f"{filename}: hashes: unexpected {type(hashes).__name__}")
    yanked = get("yanked", False)
    if not isinstance(yanked, (bool, str)):
        raise MalformedPage(f"{filename}: yanked: unexpected {type(yanked).__name__}")
    # PEP 714: prefer core-metadata, accept the older dist-info-metadata.
    metadata = get("core-metadata")
    if metadata is None:
        metadata = get("dist-info-metadata")
    size = get("size")
    if size is not None and (type(size) is not int or size < 0):  # bool is not a size
        raise MalformedPage(f"{filename}: size is not a count of bytes")
    gpg = get("gpg-sig")
    upload_time = get("upload-time")
    provenance = get("provenance")  # PEP 740: a URL or null
    first_seen = get("_first-seen")
    marked = get("_source")
    removed = get("_removed")
    return DistFile.from_fields(
        {
            "filename": filename,
            "url": _absolute(base_url, url),
            "hashes": {str(k).lower(): str(v) for k, v in hashes.items()},
            "requires_python": get("requires-python") or None,
            # PEP 592: any string (even empty) means yanked, like HTML's bare attribute.
            "yanked": (yanked or True) if isinstance(yanked, str) else yanked,
            "core_metadata": _json_metadata(metadata, f"{filename}: core-metadata"),
            "gpg_sig": gpg if isinstance(gpg, bool) else None,
            "size": size,
            "upload_time": upload_time if isinstance(upload_time, str) else None,
            "source": marked if isinstance(marked, str) else source,
            "removed": removed if isinstance(removed, str) else None,
            "provenance": urljoin(base_url, provenance) if isinstance(provenance, str) else None,
            "first_seen": first_seen if isinstance(first_seen, str) else None,
        }
    )


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = _expect(value, list, what)
    return tuple(_expect(v, str, what) for v in items)


def _serial(meta: Mapping[str, Any]) -> int | None:
    serial = meta.get("_last-serial")
    return serial if isinstance(serial, int) and not isinstance(serial, bool) else None


def project_from_json(
    text: str, base_url: str, name: str | None = None, *, source: str | None = None
) -> ProjectPage:
    """Parse a PEP 691 project page fetched from ``base_url``.

    ``source``: the configured source that served it, marked on every file
    that does not name one (done here, not by copying each file after).
    """
    data = _load_json(text)
    meta = data["meta"]
    items = _expect(data.get("files"), list, "files")
    files = tuple([_json_file(item, base_url, source) for item in items])
    versions = data.get("versions")
    status = data.get("project-status")
    status = status if isinstance(status, dict) else {}
    reason = status.get("reason")
    return ProjectPage(
        name=str(data.get("name") or name or ""),
        files=files,
        versions=None if versions is None else _strings(versions, "versions"),
        tracks=_strings(meta.get("tracks", []), "meta.tracks"),
        alternate_locations=_strings(data.get("alternate-locations", []), "alternate-locations"),
        last_serial=_serial(meta),
        sources=tuple(meta["_source"].split("+")) if isinstance(meta.get("_source"), str) else (),
        # PEP 792: {"status": ..., "reason": ...}
        status=_status(status.get("status")),
        status_reason=reason if isinstance(reason, str) and reason else None,
    )


def index_from_json(text: str) -> IndexPage:
    """Parse a PEP 691 root page."""
    data = _load_json(text)
    projects = _expect(data.get("projects"), list, "projects")
    names = tuple(
        _expect(_expect(p, dict, "projects[]").get("name"), str, "projects[].name")
        for p in projects
    )
    return IndexPage(projects=names, last_serial=_serial(data["meta"]))
