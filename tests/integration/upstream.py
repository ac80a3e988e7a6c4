"""A fake PEP 503/691 package index ("upstream") with fault injection, for integration tests.

Serves a directory written by ``fixtures.build_projects`` (``<canonical>/<files>`` plus an
optional ``project.json`` sidecar). Pages live under ``/simple/``; files are linked with
absolute URLs under ``/packages/<sha256[:2]>/<filename>`` (PEP 658 metadata at ``<url>.metadata``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import hashlib
import html
import json
import os
import re
import shutil
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SIDECAR = "project.json"
CHUNK = 64 * 1024
JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
_MEDIA = {
    JSON_V1: JSON_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    HTML_V1: HTML_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    "text/html": "text/html",
    "text/*": "text/html",
    "*/*": "text/html",
}


def canonicalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def negotiate(accept: str, allow_json: bool = True) -> str:
    """Media type to answer with for an ``Accept`` header (PEP 691); HTML when nothing fits."""
    best, best_q = "text/html", 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                with contextlib.suppress(ValueError):
                    q = float(value)
        chosen = _MEDIA.get(media.lower())
        if chosen and (allow_json or chosen != JSON_V1) and q > best_q:
            best, best_q = chosen, q
    return best


def _version(filename: str) -> str:
    for ext in (".tar.gz", ".tar.bz2", ".tgz", ".zip"):
        if filename.endswith(ext):
            return filename[: -len(ext)].rpartition("-")[2]
    parts = filename.split("-")
    return parts[1] if len(parts) > 1 else ""


def _vkey(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.+-]", version))


@dataclass
class DistFile:
    """One distribution as listed on a project page."""

    path: Path
    sha256: str
    size: int
    upload_time: str
    yanked: str | bool = False
    requires_python: str | None = None
    metadata_sha256: str | None = None  # PEP 658, when ``<file>.metadata`` exists
    provenance: str | None = None  # PEP 740: URL path of its provenance object, if any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a burst of new connections (a
    # relay or proxy opening its pool): each dropped one waits 1-3 s for its retry.
    request_queue_size = 128

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream


class Upstream:
    """Fake package index on ``127.0.0.1:<ephemeral port>``, started on construction.

    ``fmt="json"``: PEP 691 JSON when the request's Accept allows it, else PEP 503 HTML.
    ``fmt="html"``: always HTML. Fault knobs may be changed at any time while serving.
    """

    def __init__(self, files_dir: Path, fmt: str = "json") -> None:
        if fmt not in ("json", "html"):
            raise ValueError(f"fmt must be 'json' or 'html', not {fmt!r}")
        self.files_dir, self.fmt = Path(files_dir), fmt
        self.added: list[Path] = []  # what add_file wrote (files, new project folders)
        self.hits: collections.Counter[str] = collections.Counter()  # GETs per URL path
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.corrupt: set[str] = set()  # filenames served with their last byte flipped
        self.truncate: set[str] = set()  # filenames cut off after half the bytes
        self.slow: dict[str, float] = {}  # filename -> seconds to sleep before each chunk
        self.malformed: set[str] = set()  # project names whose page body is garbage
        self.down = False  # answer every request with 503
        self.delay_pages = 0.0  # seconds to sleep before answering a page
        self.delay_root = 0.0  # seconds to sleep before answering the root page
        self.offer_serials = True  # PEP 691 _last-serial on the root and project pages
        self.send_etags = True  # ETag on pages (and 304 to a matching If-None-Match)
        self.serials: dict[str, int] = {}  # canonical -> serial of its last change
        self.root_body: tuple[str, bytes] | None = None  # (content type, body) for /simple/
        self.bytes_sent = 0  # body bytes of every answer, for benchmarks
        self._last_serial = 0
        self.auth: tuple[str, str] | None = None  # (user, password) required, if set
        self.names: dict[str, str] = {}  # canonical -> display name
        self.projects: dict[str, dict[str, DistFile]] = {}  # canonical -> filename -> file
        self._paths: dict[str, Path] = {}  # URL path -> file on disk
        self.blobs: dict[str, bytes] = {}  # URL path -> JSON body (PEP 740 provenance)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        for d in sorted(p for p in self.files_dir.iterdir() if p.is_dir()):
            self._load(d)
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/simple/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def auth_header(self) -> str:
        """The ``Authorization`` header value that ``auth`` requires."""
        assert self.auth is not None
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return f"Basic {token}"

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, abort sleeping handlers, close open connections and the socket."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def _load(self, d: Path) -> None:
        sidecar = d / SIDECAR
        info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        canon = canonicalize(d.name)
        self.names[canon] = info.get("name", d.name)
        self.projects.setdefault(canon, {})
        for p in sorted(d.iterdir()):
            if p.is_file() and p.name != SIDECAR and not p.name.endswith(".metadata"):
                self._register(canon, p, info.get("files", {}).get(p.name, {}))

    def _register(self, canon: str, path: Path, info: dict[str, str]) -> DistFile:
        with path.open("rb") as fh:
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
        meta = path.with_name(path.name + ".metadata")
        meta_sha = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.exists() else None
        st = path.stat()
        mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)
        dist = DistFile(
            path=path,
            sha256=sha,
            size=st.st_size,
            upload_time=info.get("upload-time", mtime.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
            yanked=info.get("yanked", False),
            requires_python=info.get("requires-python"),
            metadata_sha256=meta_sha,
        )
        with self._lock:
            self._last_serial += 1
            self.serials[canon] = self._last_serial
            self.projects.setdefault(canon, {})[path.name] = dist
            self._paths[self.file_path(path.name, sha)] = path
            if meta_sha:
                self._paths[self.file_path(path.name, sha) + ".metadata"] = meta
        return dist

    def add_file(self, project: str, filename: str, data_or_size: bytes | int) -> DistFile:
        """Add a file (given bytes, or that many random bytes) to ``project`` while serving."""
        canon = canonicalize(project)
        path = self.files_dir / canon / filename
        if not path.parent.exists():
            self.added.append(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.added.append(path)
        with path.open("wb") as fh:
            if isinstance(data_or_size, bytes):
                fh.write(data_or_size)
            else:
                for start in range(0, data_or_size, 1 << 20):
                    fh.write(os.urandom(min(1 << 20, data_or_size - start)))
        self.names.setdefault(canon, project)
        return self._register(canon, path, {})

    def remove_added(self) -> None:
        """Remove what :meth:`add_file` wrote: a folder shared with later tests stays as built."""
        for path in reversed(self.added):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.added.clear()

    def add_provenance(self, filename: str, data: bytes) -> str:
        """Give a listed file a PEP 740 provenance object; return its URL path."""
        dist = self.file(filename)
        url_path = f"/integrity/{filename}/provenance"
        with self._lock:
            self.blobs[url_path] = data  # in memory: the fixture folder is shared
            dist.provenance = url_path
        return url_path

    def file(self, filename: str) -> DistFile:
        """The listed file named ``filename`` (KeyError if none)."""
        for files in self.projects.values():
            if filename in files:
                return files[filename]
        raise KeyError(filename)

    def file_path(self, filename: str, sha256: str | None = None) -> str:
        """URL path of a file, e.g. for ``hits[...]``."""
        return f"/packages/{(sha256 or self.file(filename).sha256)[:2]}/{filename}"

    def file_url(self, filename: str) -> str:
        """Absolute URL of a file as linked from the project page."""
        return self.root + self.file_path(filename)

    def page(self, canon: str | None, media: str) -> bytes:
        """Body of the root page (``canon=None``) or a project page in ``media`` format."""
        if canon is not None and canon in {canonicalize(n) for n in self.malformed}:
            return b'{"meta": {"api-version": ' if media == JSON_V1 else b"\x89PNG\x00\xff<<<"
        if media == JSON_V1:
            return json.dumps(self._json(canon), indent=1).encode()
        if canon is None:
            links = [f'<a href="{c}/">{html.escape(self.names[c])}</a>' for c in sorted(self.names)]
            return _html("Simple index", links)
        links = []
        for name, f in sorted(self.projects[canon].items()):
            attrs = f'href="{html.escape(self.file_url(name))}#sha256={f.sha256}"'
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if f.yanked is not False:
                reason = f.yanked if isinstance(f.yanked, str) else ""
                attrs += f' data-yanked="{html.escape(reason)}"'
            if f.metadata_sha256:
                attrs += f' data-core-metadata="sha256={f.metadata_sha256}"'
                attrs += f' data-dist-info-metadata="sha256={f.metadata_sha256}"'
            if f.provenance:  # PEP 740
                attrs += f' data-provenance="{html.escape(self.root + f.provenance)}"'
            links.append(f"<a {attrs}>{html.escape(name)}</a>")
        return _html(f"Links for {self.names[canon]}", links)

    def _json(self, canon: str | None) -> dict[str, object]:
        if canon is None:
            projects: list[dict[str, object]] = [
                {"name": self.names[c]} for c in sorted(self.names)
            ]
            meta: dict[str, object] = {"api-version": "1.0"}
            if self.offer_serials:
                for project, c in zip(projects, sorted(self.names), strict=True):
                    project["_last-serial"] = self.serials.get(c, 0)
                meta["_last-serial"] = self._last_serial
            return {"meta": meta, "projects": projects}
        files: list[dict[str, object]] = []
        for name, f in sorted(self.projects[canon].items()):
            entry: dict[str, object] = {
                "filename": name,
                "url": self.file_url(name),
                "hashes": {"sha256": f.sha256},
                "size": f.size,
                "upload-time": f.upload_time,
                "yanked": f.yanked,
            }
            if f.requires_python:
                entry["requires-python"] = f.requires_python
            if f.metadata_sha256:
                entry["core-metadata"] = {"sha256": f.metadata_sha256}
                entry["dist-info-metadata"] = {"sha256": f.metadata_sha256}
            if f.provenance:  # PEP 740
                entry["provenance"] = self.root + f.provenance
            files.append(entry)
        versions = sorted({v for n in self.projects[canon] if (v := _version(n))}, key=_vkey)
        page_meta: dict[str, object] = {"api-version": "1.1"}
        if self.offer_serials:
            page_meta["_last-serial"] = self.serials.get(canon, 0)
        return {
            "meta": page_meta,
            "name": self.names[canon],
            "versions": versions,
            "files": files,
        }


def _html(title: str, links: list[str]) -> bytes:
    body = "\n".join(f"    {link}<br/>" for link in links)
    return (
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
        f'content="1.0">\n    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n'
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes: without this, Nagle's algorithm and
    # delayed ACKs stall every response after the first on a kept-alive connection.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections give up eventually
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.upstream._lock:
            self.server.upstream._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.upstream._lock:
            self.server.upstream._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def _send(self, code: int, body: bytes, ctype: str, head: bool, **headers: str) -> None:
        self.send_response(code)
        if code != 304:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if not head and code != 304:
            self.wfile.write(body)
            self.server.upstream.bytes_sent += len(body)

    def _handle(self, head: bool) -> None:
        up = self.server.upstream
        path = urllib.parse.urlsplit(self.path).path
        with up._lock:
            up.requests.append((self.command, path, dict(self.headers.items())))
            if not head:
                up.hits[path] += 1
        if up.down:
            return self._send(503, b"upstream is down\n", "text/plain", head, Retry_After="1")
        if up.auth is not None and self.headers.get("Authorization") != up.auth_header():
            return self._send(
                401,
                b"authentication required\n",
                "text/plain",
                head,
                WWW_Authenticate='Basic realm="test"',
            )
        if path in up._paths:
            return self._file(up._paths[path], head)
        if path in up.blobs:
            return self._send(200, up.blobs[path], "application/json", head)
        if path == "/simple":
            return self._send(301, b"", "text/plain", head, Location=up.url)
        if not path.startswith("/simple/"):
            return self._send(404, b"not found\n", "text/plain", head)
        name = path.removeprefix("/simple/")
        if name and (canonicalize(name.rstrip("/")) + "/" != name):
            if "/" in name.rstrip("/"):
                return self._send(404, b"not found\n", "text/plain", head)
            location = f"{up.url}{canonicalize(name.rstrip('/'))}/"
            return self._send(301, b"", "text/plain", head, Location=location)
        canon = name.rstrip("/") or None
        if canon is not None and canon not in up.projects:
            return self._send(404, b"no such project\n", "text/plain", head)
        if up.delay_pages:
            up._stopping.wait(up.delay_pages)
        if canon is None and up.delay_root:
            up._stopping.wait(up.delay_root)
        media = negotiate(self.headers.get("Accept", ""), allow_json=up.fmt == "json")
        if canon is None and up.root_body is not None:
            media, body = up.root_body
        else:
            body = up.page(canon, media)
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        inm = self.headers.get("If-None-Match", "")
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        code = 304 if up.send_etags and (etag in tags or "*" in tags) else 200
        ctype = media + ("; charset=utf-8" if media == "text/html" else "")
        extra = {"ETag": etag} if up.send_etags else {}
        self._send(code, body, ctype, head, Vary="Accept", Cache_Control="max-age=600", **extra)

    def _file(self, path: Path, head: bool) -> None:
        up = self.server.upstream
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return
        limit = size // 2 if path.name in up.truncate else size
        delay, sent = up.slow.get(path.name, 0.0), 0
        with path.open("rb") as fh:
            while sent < limit:
                if delay and up._stopping.wait(delay):
                    break
                chunk = fh.read(min(CHUNK, limit - sent))
                if not chunk:
                    break
                if path.name in up.corrupt and sent + len(chunk) == size:
                    chunk = chunk[:-1] + bytes([chunk[-1] ^ 0xFF])
                try:
                    self.wfile.write(chunk)
                except OSError:
                    break
                sent += len(chunk)
        if sent < size:
            self.close_connection = True
