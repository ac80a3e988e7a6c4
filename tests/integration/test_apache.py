"""eggproxy behind a real Apache + mod_python: pages, hits, locks, failures, hostile paths."""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from tests.integration.clients import ClientTools, IndexClients
from tests.integration.upstream import Upstream

# Apache-specific: whatever front ends the ``proxy`` fixture knows, these run on Apache only.
pytestmark = [pytest.mark.integration, pytest.mark.parametrize("proxy", ["apache"], indirect=True)]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
YANKED = "demo_pkg-0.9-py3-none-any.whl"
NEWEST = "demo_pkg-2.0-py3-none-any.whl"
SDIST = "demo_pkg-1.0.tar.gz"
BAD_GATEWAY = (502, 504)


class ApacheFrontEnd(Protocol):
    url: str
    cache_dir: Path

    def error_log_text(self) -> str: ...
    def access_log_lines(self) -> list[str]: ...
    def log_text(self, name: str) -> str: ...


def get(url: str, **headers: str) -> requests.Response:
    """GET without following redirects (``If_None_Match=`` sends ``If-None-Match``)."""
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    return requests.get(url, headers=sent, allow_redirects=False, timeout=60)


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """Send ``path`` exactly as given (no client-side normalisation of ``..`` or ``%``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def leftovers(cache_dir: Path) -> list[str]:
    """Partial downloads and temporary files anywhere in the cache."""
    return [
        str(p.relative_to(cache_dir))
        for p in cache_dir.rglob("*")
        if p.name.endswith((".part", ".size")) or p.name.startswith(".tmp-")
    ]


def log_lines(proxy: ApacheFrontEnd, path: str, count: int) -> list[str]:
    """The access log lines of ``GET path``, once there are ``count`` of them.

    Apache writes a line just after its response, so wait for it (bounded).
    """
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in proxy.access_log_lines() if f'"GET {path} ' in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def python_notes(proxy: ApacheFrontEnd, path: str, count: int) -> list[str]:
    """What the eggproxy fixup did for each ``GET path``, in order; ``"-"``: it did not run.

    From the harness's access log (``eggproxy=%{eggproxy}n``): the fixup's request note.
    """
    lines = log_lines(proxy, path, count)
    return [m.group(1) if (m := re.search(r" eggproxy=(\S+)", line)) else "?" for line in lines]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def spareless(paths: set[str]) -> set[str]:
    return {p for p in paths if not p.startswith(".spare/")}


class Links(HTMLParser):
    """The attributes of every ``<a>`` of a page, by link text."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.links: dict[str, dict[str, str | None]] = {}
        self._current: dict[str, str | None] | None = None
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._current = dict(attrs) if tag == "a" else None

    def handle_data(self, data: str) -> None:
        if self._current is not None and data.strip():
            self.links[data.strip()] = self._current
            self._current = None


@pytest.fixture(autouse=True)
def no_tracebacks(proxy: ApacheFrontEnd) -> Iterator[None]:
    """No request may end in an unexpected error inside mod_python."""
    yield
    log = proxy.error_log_text()
    assert "Traceback" not in log and "unexpected error" not in log, log


# --- 1. pages ---------------------------------------------------------------------


def test_project_page_json(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    response = get(proxy.url + "demo-pkg/", Accept=PIP_ACCEPT)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON_TYPE
    assert "Accept" in response.headers["Vary"]
    data = response.json()
    assert data["name"] == "demo-pkg" and data["meta"]["api-version"].startswith("1.")
    files = {f["filename"]: f for f in data["files"]}
    listed = upstream.projects["demo-pkg"]
    assert set(files) == set(listed)
    for name, item in files.items():
        assert item["url"] == name  # relative: the cache tree can move
        assert item["hashes"] == {"sha256": listed[name].sha256}
        if upstream.fmt == "json":
            assert item["size"] == listed[name].size
    assert files[YANKED]["yanked"] == "broken build"
    assert not files[WHEEL].get("yanked")
    assert files[NEWEST]["requires-python"] == ">=3.8"
    assert "requires-python" not in files[WHEEL]
    assert files[WHEEL]["core-metadata"] == {"sha256": listed[WHEEL].metadata_sha256}
    assert not files[SDIST].get("core-metadata")
    # A fresh page is a hit: Apache serves it, the upstream is not asked again.
    again = get(proxy.url + "demo-pkg/", Accept=PIP_ACCEPT)
    assert again.status_code == 200 and again.content == response.content
    assert upstream.hits["/simple/demo-pkg/"] == 1


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/html"),
        ("text/html", "text/html"),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
    ],
)
def test_project_page_html(
    proxy: ApacheFrontEnd, upstream: Upstream, accept: str | None, content_type: str
) -> None:
    response = get(proxy.url + "demo-pkg/", **({"Accept": accept} if accept else {}))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].split(";")[0] == content_type
    assert "Accept" in response.headers["Vary"]
    links = Links(response.text).links
    listed = upstream.projects["demo-pkg"]
    assert set(links) == set(listed)
    for name, attrs in links.items():
        assert attrs["href"] == f"{name}#sha256={listed[name].sha256}"
    assert links[YANKED]["data-yanked"] == "broken build"
    assert "data-yanked" not in links[WHEEL]
    assert links[NEWEST]["data-requires-python"] == ">=3.8"
    assert links[WHEEL]["data-core-metadata"] == f"sha256={listed[WHEEL].metadata_sha256}"
    assert "data-core-metadata" not in links[SDIST]


BIG_PAGE_FILES = 9000  # 1.2-1.5 MiB a format: past the shared-memory store, on mod_cache_disk


def test_a_page_over_a_mebibyte_is_served_whole_in_both_formats(
    proxy: ApacheFrontEnd, upstream: Upstream
) -> None:
    """A page too big for mod_cache's shared memory is kept on disk, and still sent whole."""
    names = [f"big_pkg-1.{i}.tar.gz" for i in range(BIG_PAGE_FILES)]
    for name in names:
        upstream.add_file("big-pkg", name, name.encode())
    first = get(proxy.url + "big-pkg/", Accept=PIP_ACCEPT)
    assert first.status_code == 200, first.text[:500]
    assert len(first.content) > 1 << 20
    assert int(first.headers["Content-Length"]) == len(first.content)
    assert sorted(f["filename"] for f in first.json()["files"]) == sorted(names)
    again = get(proxy.url + "big-pkg/", Accept=PIP_ACCEPT)  # mod_cache's copy, from disk
    assert again.status_code == 200 and again.content == first.content
    html = get(proxy.url + "big-pkg/", Accept="text/html")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert len(html.content) > 1 << 20 and set(Links(html.text).links) == set(names)
    assert get(proxy.url + "big-pkg/", Accept="text/html").content == html.content
    assert upstream.hits["/simple/big-pkg/"] == 1
    # Each format's second answer was mod_cache's (from disk): Python never ran for it.
    notes = python_notes(proxy, "/simple/big-pkg/", 4)
    assert notes[1] == notes[3] == "-", notes


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("Dotted.Name/", "dotted-name/"),
        ("dotted_name/", "dotted-name/"),
        ("DOTTED-NAME", "dotted-name/"),
        ("demo-pkg", "demo-pkg/"),
        ("Demo_Pkg/demo_pkg-1.0.tar.gz", "demo-pkg/demo_pkg-1.0.tar.gz"),
    ],
)
def test_non_normalised_names_redirect(
    proxy: ApacheFrontEnd, upstream: Upstream, path: str, location: str
) -> None:
    response = get(proxy.url + path)
    assert response.status_code == 301
    assert urljoin(proxy.url, response.headers["Location"]) == proxy.url + location
    assert get(proxy.url + location).status_code == 200


def test_unknown_project_is_404(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    for accept in (PIP_ACCEPT, "text/html"):
        assert get(proxy.url + "no-such-project/", Accept=accept).status_code == 404
    assert not (proxy.cache_dir / "no-such-project").exists()


def test_root_page_lists_projects(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    as_json = get(proxy.url, Accept=PIP_ACCEPT)
    assert as_json.status_code == 200 and as_json.headers["Content-Type"] == JSON_TYPE
    names = {re.sub(r"[-_.]+", "-", p["name"]).lower() for p in as_json.json()["projects"]}
    assert names == set(upstream.projects)
    as_html = get(proxy.url)
    assert as_html.status_code == 200 and "Accept" in as_html.headers["Vary"]
    hrefs = {attrs["href"] for attrs in Links(as_html.text).links.values()}
    assert hrefs == {f"{name}/" for name in upstream.projects}


# --- 2. files ---------------------------------------------------------------------


def test_file_hit_is_served_by_apache(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    url = proxy.url + f"demo-pkg/{WHEEL}"
    data = upstream.file(WHEEL).path.read_bytes()
    first = get(url)
    assert first.status_code == 200 and first.content == data
    assert first.headers["Content-Type"] == "application/zip"
    assert "immutable" in first.headers["Cache-Control"]
    cached = proxy.cache_dir / "demo-pkg" / WHEEL
    assert cached.read_bytes() == data

    hit = get(url)
    assert hit.status_code == 200 and hit.content == data
    # Apache's own ETag (FileETag MTime Size: "<size>-<mtime in µs>", hex; weak while young).
    st = cached.stat()
    assert hit.headers["ETag"].removeprefix("W/") == f'"{st.st_size:x}-{st.st_mtime_ns // 1000:x}"'
    assert hit.headers["Accept-Ranges"] == "bytes"
    ranged = get(url, Range="bytes=0-9")
    assert ranged.status_code == 206 and ranged.content == data[:10]
    assert ranged.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    assert get(url, If_None_Match=hit.headers["ETag"]).status_code == 304
    assert upstream.hits[upstream.file_path(WHEEL)] == 1

    metadata = get(url + ".metadata")
    assert metadata.status_code == 200
    assert metadata.content == upstream.file(WHEEL).path.with_name(WHEEL + ".metadata").read_bytes()
    assert metadata.headers["Content-Type"].startswith("text/plain")
    assert upstream.hits[upstream.file_path(WHEEL) + ".metadata"] == 1
    assert leftovers(proxy.cache_dir) == []


def test_every_listed_file_is_served(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    """Wheels, sdists (tar.gz, zip) and eggs, each fetched before its page was cached."""
    for project, files in upstream.projects.items():
        for name, dist in files.items():
            response = get(proxy.url + f"{project}/{name}")
            assert response.status_code == 200, (name, response.text)
            assert response.content == dist.path.read_bytes()
            assert (proxy.cache_dir / project / name).is_file()


# --- 3. concurrency ---------------------------------------------------------------


def _concurrently(url: str, count: int = 8) -> list[requests.Response]:
    barrier = threading.Barrier(count)

    def fetch(_: int) -> requests.Response:
        barrier.wait(timeout=30)
        # Close at once: an idle keep-alive connection would hold a prefork child.
        return requests.get(url, headers={"Connection": "close"}, timeout=60)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(fetch, range(count)))


def _pids(proxy: ApacheFrontEnd, path: str) -> set[str]:
    return {
        m.group(1)
        for line in proxy.access_log_lines()
        if f"GET {path} " in line and (m := re.search(r"pid=(\d+)", line))
    }


def test_concurrent_misses_download_once(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    assert get(proxy.url + "demo-pkg/").status_code == 200
    upstream.slow[WHEEL] = 1.0  # the download takes a second: every request overlaps it
    data = upstream.file(WHEEL).path.read_bytes()
    responses = _concurrently(proxy.url + f"demo-pkg/{WHEEL}")
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert all(r.content == data for r in responses)
    assert upstream.hits[upstream.file_path(WHEEL)] == 1
    # Several Apache processes took part, so the flock coordinated processes.
    assert len(_pids(proxy, f"/simple/demo-pkg/{WHEEL}")) >= 2
    assert leftovers(proxy.cache_dir) == []


def test_concurrent_page_misses_fetch_once(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    upstream.delay_pages = 1.0
    responses = _concurrently(proxy.url + "demo-pkg/")
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert len({r.content for r in responses}) == 1
    assert upstream.hits["/simple/demo-pkg/"] == 1
    assert len(_pids(proxy, "/simple/demo-pkg/")) >= 2


# --- 4. failures ------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["corrupt", "truncate"])
def test_bad_download_is_refused(proxy: ApacheFrontEnd, upstream: Upstream, fault: str) -> None:
    getattr(upstream, fault).add(WHEEL)
    url = proxy.url + f"demo-pkg/{WHEEL}"
    assert get(url).status_code == 502
    assert not (proxy.cache_dir / "demo-pkg" / WHEEL).exists()
    assert leftovers(proxy.cache_dir) == []
    # Nothing was poisoned: once the upstream behaves, the file is fetched and served.
    getattr(upstream, fault).discard(WHEEL)
    response = get(url)
    assert response.status_code == 200
    assert response.content == upstream.file(WHEEL).path.read_bytes()


def test_upstream_down_nothing_cached(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    upstream.down = True
    for path in ("", "demo-pkg/", f"demo-pkg/{WHEEL}"):
        assert get(proxy.url + path).status_code in BAD_GATEWAY, path
    assert leftovers(proxy.cache_dir) == []
    assert not (proxy.cache_dir / "demo-pkg" / WHEEL).exists()


# Blocking revalidation (issue 15's window off): this is the fallback on failure.
@pytest.mark.proxy_options(index_ttl=1, extra_config="stale_while_revalidate = 0\n")
def test_stale_page_served_when_upstream_down(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    pages = {accept: get(proxy.url + "demo-pkg/", Accept=accept) for accept in (PIP_ACCEPT, "")}
    assert all(page.status_code == 200 for page in pages.values())
    assert all("Warning" not in page.headers for page in pages.values())
    time.sleep(1.5)  # older than index_ttl
    upstream.down = True
    for accept, fresh in pages.items():
        stale = get(proxy.url + "demo-pkg/", Accept=accept)
        assert stale.status_code == 200
        assert stale.content == fresh.content
        assert stale.headers["Content-Type"] == fresh.headers["Content-Type"]
        assert stale.headers["Warning"].startswith("110 ")
    assert upstream.hits["/simple/demo-pkg/"] >= 2  # it did try to revalidate


# --- 5. hostile requests ----------------------------------------------------------

LONG_NAME = "a" * 230  # over eggproxy's limit (200), under the file system's (255)
HOSTILE = [
    ("/simple/../etc/passwd", {400, 404}),
    ("/simple/%2e%2e/%2e%2e/etc/passwd", {400, 404}),
    ("/simple/demo-pkg/%2e%2e/%2e%2e/%2e%2e/etc/passwd", {400, 404}),
    ("/simple/demo-pkg/..%2f..%2fetc%2fpasswd", {400, 404}),
    ("/simple/demo-pkg/%00.whl", {400, 404}),
    (f"/simple/{LONG_NAME}/", {400}),
    # Over NAME_MAX: Apache's own directory walk fails first (ENAMETOOLONG -> 403).
    (f"/simple/{'a' * 300}/", {400, 403, 404}),
    (f"/simple/demo-pkg/{LONG_NAME}-1.0.tar.gz", {400, 404}),
    ("/simple/foo%24bar/", {400, 404}),
    ("/simple/_bad_/", {400, 404}),
    ("/simple/demo-pkg/not-listed-1.0.tar.gz", {404}),
    # Files that exist in the cache but are not index URLs: Apache's own access control (the
    # vhost's ``<FilesMatch>`` and ``<DirectoryMatch>``) refuses them, Python never sees them.
    ("/simple/demo-pkg/index.json", {403}),
    ("/simple/index.html", {403}),
    ("/simple/demo-pkg/.state.json", {403}),
    ("/simple/demo-pkg/.upstream.json", {403}),
    ("/simple/.eggproxy-layout", {403}),
    ("/simple/.locks/demo-pkg", {403}),
    ("/simple/.locks/", {403}),
    ("/simple/%2elocks/demo-pkg", {403}),
    ("/simple/.spare/", {403}),
    # Not there (the lock of a finished download, a partial file): refused all the same.
    (f"/simple/demo-pkg/.{WHEEL}.lock", {400, 403, 404}),
    (f"/simple/demo-pkg/.{WHEEL}.part", {400, 403, 404}),
]


def test_hostile_requests(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    # Something worth leaking first: a cached page, its state files and a file.
    assert get(proxy.url + "demo-pkg/").status_code == 200
    assert get(proxy.url + f"demo-pkg/{WHEEL}").status_code == 200
    state = (proxy.cache_dir / "demo-pkg" / ".state.json").read_bytes()
    outside = proxy.cache_dir.parent
    before_outside = {p for p in tree(outside) if not p.startswith(("logs", "cache"))}
    before_cache = tree(proxy.cache_dir)
    seen = len(upstream.requests)

    for path, allowed in HOSTILE:
        status, body = raw_get(proxy.url, path)
        assert status in allowed, (path, status, body[:200])
        assert b"root:" not in body and state not in body, path
    # What exists on disk but is no index URL is refused by Apache before any Python runs.
    for path, allowed in HOSTILE:
        if allowed == {403}:
            assert python_notes(proxy, path, 1) == ["-"], path

    after_outside = {p for p in tree(outside) if not p.startswith(("logs", "cache"))}
    assert after_outside == before_outside
    # Apache's children refill their spare files (eggproxy.spares) when they like.
    assert spareless(tree(proxy.cache_dir)) == spareless(before_cache)
    assert not any("passwd" in p for p in tree(outside))
    # The page was fresh: no hostile request reached the upstream, let alone a file URL.
    assert [r[1] for r in upstream.requests[seen:]] == []


# --- 6. hits without Python -------------------------------------------------------


def test_file_hit_never_enters_python(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    path = f"/simple/demo-pkg/{WHEEL}"
    data = upstream.file(WHEEL).path.read_bytes()
    assert get(proxy.url + f"demo-pkg/{WHEEL}").status_code == 200  # the miss: the fixup fetches
    for _ in range(3):
        hit = get(proxy.url + f"demo-pkg/{WHEEL}")
        assert hit.status_code == 200 and hit.content == data
        # What the fixup would have sent, from the vhost alone.
        assert hit.headers["Content-Type"] == "application/zip"
        assert hit.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # Sorted: a child may write its line after the next request's (the miss logs last).
    assert sorted(python_notes(proxy, path, 4)) == ["-", "-", "-", "file"]
    metadata = get(proxy.url + f"demo-pkg/{WHEEL}.metadata")
    assert metadata.status_code == 200
    assert get(proxy.url + f"demo-pkg/{WHEEL}.metadata").headers["Content-Type"] == (
        "text/plain; charset=utf-8"
    )
    assert sorted(python_notes(proxy, path + ".metadata", 2)) == ["-", "file"]
    assert upstream.hits[upstream.file_path(WHEEL)] == 1
    # Files stay out of mod_cache's store: they are served from the cache directory itself.
    assert all("'no-cache' is set" in line for line in log_lines(proxy, path, 4))


@pytest.mark.parametrize("accept", [PIP_ACCEPT, "text/html"])
def test_fresh_page_hit_never_enters_python(
    proxy: ApacheFrontEnd, upstream: Upstream, accept: str
) -> None:
    first = get(proxy.url + "demo-pkg/", Accept=accept)
    assert first.status_code == 200
    for _ in range(3):
        # pip asks every index page with "Cache-Control: max-age=0"; eggproxy's TTL decides.
        hit = get(proxy.url + "demo-pkg/", Accept=accept, Cache_Control="max-age=0")
        assert hit.status_code == 200 and hit.content == first.content
        assert hit.headers["Content-Type"] == first.headers["Content-Type"]
        assert "Accept" in hit.headers["Vary"]
        assert hit.headers["X-Cache"].startswith("HIT")
    assert sorted(python_notes(proxy, "/simple/demo-pkg/", 4)) == ["-", "-", "-", "miss"]
    assert upstream.hits["/simple/demo-pkg/"] == 1


@pytest.mark.proxy_options(index_ttl=1, extra_config="stale_while_revalidate = 0\n")
def test_stale_page_is_revalidated_by_eggproxy(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    fresh = {accept: get(proxy.url + "demo-pkg/", Accept=accept) for accept in (PIP_ACCEPT, "")}
    assert upstream.hits["/simple/demo-pkg/"] == 1
    assert sorted(python_notes(proxy, "/simple/demo-pkg/", 2)) == ["hit", "miss"]
    time.sleep(1.5)  # older than index_ttl: mod_cache's copies are stale too
    stale = get(proxy.url + "demo-pkg/", Accept=PIP_ACCEPT)
    assert stale.status_code == 200 and stale.content == fresh[PIP_ACCEPT].content
    assert upstream.hits["/simple/demo-pkg/"] == 2  # eggproxy asked the upstream again
    assert python_notes(proxy, "/simple/demo-pkg/", 3)[2] in ("revalidated", "miss")
    # The HTML copy was stale as well: it goes back to the fixup, which finds the page fresh.
    html = get(proxy.url + "demo-pkg/")
    assert html.content == fresh[""].content
    assert python_notes(proxy, "/simple/demo-pkg/", 4)[3] == "hit"
    assert upstream.hits["/simple/demo-pkg/"] == 2


def test_html_and_json_never_mix(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    """mod_cache keeps one copy per Accept (Vary: Accept), so each client gets its format."""
    accepts = {
        PIP_ACCEPT: JSON_TYPE,
        JSON_TYPE: JSON_TYPE,
        "text/html": "text/html",
        "": "text/html",
        "application/vnd.pypi.simple.v1+html": "application/vnd.pypi.simple.v1+html",
    }
    for path in ("", "demo-pkg/"):
        bodies: dict[str, set[bytes]] = {}
        for round_ in range(3):
            if round_ == 1:  # every line of the first round written before the next
                log_lines(proxy, f"/simple/{path}", len(accepts))
            for accept, content_type in accepts.items():
                response = get(proxy.url + path, Accept=accept)
                assert response.status_code == 200
                assert response.headers["Content-Type"].split(";")[0] == content_type
                assert "Accept" in response.headers["Vary"]
                fmt = "json" if content_type.endswith("json") else "html"
                bodies.setdefault(fmt, set()).add(response.content)
        assert len(bodies["json"]) == 1 and len(bodies["html"]) == 1
        assert bodies["json"].pop().startswith(b"{")
        assert bodies["html"].pop().lstrip().startswith(b"<")
    # The later rounds were all answered by mod_cache.
    later = python_notes(proxy, "/simple/demo-pkg/", 15)[len(accepts) :]
    assert later == ["-"] * (2 * len(accepts))


def test_pip_second_install_never_enters_python(
    proxy: ApacheFrontEnd, upstream: Upstream, client_tools: ClientTools, tmp_path: Path
) -> None:
    clients = IndexClients(client_tools, proxy.url, tmp_path)
    clients.pip_install(clients.pip_venv(), "demo-pkg")
    seen = len(proxy.access_log_lines())
    venv = clients.pip_venv("second-pip-venv")
    clients.pip_install(venv, "demo-pkg")
    assert clients.installed(venv)["demo-pkg"] == "2.0"
    lines = [line for line in proxy.access_log_lines()[seen:] if '"GET /simple/' in line]
    assert lines and all(" eggproxy=- " in line for line in lines), lines


def test_log_lines_go_to_the_vhost_error_log(proxy: ApacheFrontEnd, upstream: Upstream) -> None:
    upstream.down = True
    assert get(proxy.url + "demo-pkg/").status_code in BAD_GATEWAY
    assert "eggproxy: GET /simple/demo-pkg/ -> 50" in proxy.log_text("eggproxy-error.log")
    assert "eggproxy:" not in proxy.log_text("error.log")
