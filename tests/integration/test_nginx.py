"""nginx in front of ``eggproxy serve``, as ``eggproxy deploy nginx`` prints it.

What nginx answers itself (cached files, fresh pages, refusals) is told apart from what went
to eggproxy by nginx's access log: ``$upstream_addr`` is ``-`` when no Python ran.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator

import pytest
import requests
from conftest import private_upstream
from tests.integration.nginx import NginxProxy, require_nginx
from tests.integration.standalone import wait_until
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
WHEEL = "demo_pkg-2.0-py3-none-any.whl"
SDIST = "demo_pkg-1.0.tar.gz"


own_upstream = pytest.fixture(private_upstream, name="own_upstream")


@pytest.fixture
def front(upstream: Upstream) -> Iterator[NginxProxy]:
    require_nginx()
    with NginxProxy(upstream.url, index_ttl=300) as proxy:
        yield proxy


def get(url: str, accept: str | None = None, **headers: str) -> requests.Response:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if accept is not None:
        sent["Accept"] = accept
    return requests.get(url, headers=sent, allow_redirects=False, timeout=60)


def served_by(proxy: NginxProxy, path: str, count: int) -> list[tuple[str, str, str]]:
    """(status, cache status, upstream address) of the ``count`` logged requests for ``path``.

    nginx logs a request once it has answered it: wait (bounded) for the line.
    """

    def found() -> list[tuple[str, str, str]]:
        lines = [line.split(" ", 3) for line in proxy.access_log_lines()]
        return [(s, c, u.strip('"')) for s, c, u, r in lines if r.split(" ")[1] == path]

    wait_until(lambda: len(found()) >= count)
    return found()


def path_of(proxy: NginxProxy, rest: str) -> str:
    return "/simple/" + rest


def test_printed_file_passes_nginx_t(front: NginxProxy) -> None:
    done = front.test_config()
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


ACCEPTS = [
    None,
    "",
    "*/*",
    "text/html",
    PIP_ACCEPT,
    UV_ACCEPT,
    JSON_TYPE,
    "application/vnd.pypi.simple.latest+json",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/vnd.pypi.simple.v1+html",
    f"text/html, {JSON_TYPE};q=0.5",
    f"text/html;q=2, {JSON_TYPE}",
    f"{JSON_TYPE};q=0, text/html",
    "APPLICATION/VND.PYPI.SIMPLE.V1+JSON",
    f"{JSON_TYPE}, text/html;q=1e3",
    f"{JSON_TYPE}, text/html;Q=nan",
    f"{JSON_TYPE}, text/html;q = 1.0 ",
]


def test_pages_negotiate_like_eggproxy_serve(front: NginxProxy) -> None:
    """PEP 691: whatever Accept says, nginx answers what eggproxy serve answers, twice."""
    for accept in ACCEPTS:
        direct = get(front.serve.url + "demo-pkg/", accept)
        for _ in range(2):  # a miss (or a pass), then what nginx's page cache holds
            response = get(front.url + "demo-pkg/", accept)
            assert response.status_code == 200, accept
            assert response.headers["content-type"] == direct.headers["content-type"], accept
            assert response.content == direct.content, accept
            assert response.headers["vary"] == "Accept"


def test_fresh_pages_and_cached_files_never_reach_python(front: NginxProxy) -> None:
    page, file = path_of(front, "demo-pkg/"), path_of(front, f"demo-pkg/{WHEEL}")
    first = get(front.url + "demo-pkg/", PIP_ACCEPT)
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert get(front.url + f"demo-pkg/{WHEEL}").status_code == 200  # a miss: eggproxy
    for _ in range(3):
        again = get(front.url + "demo-pkg/", PIP_ACCEPT)
        assert again.content == first.content
        # Its stored max-age is no longer the time left: caches below revalidate.
        assert again.headers["cache-control"] == "public, no-cache"
        assert get(front.url + f"demo-pkg/{WHEEL}").status_code == 200
    assert served_by(front, page, 4)[1:] == [("200", "HIT", "-")] * 3
    assert served_by(front, file, 4)[0][2] != "-"
    assert served_by(front, file, 4)[1:] == [("200", "-", "-")] * 3
    # HTML and JSON stay apart in nginx's cache.
    html = get(front.url + "demo-pkg/", "text/html")
    assert html.headers["content-type"].startswith("text/html") and b"<a " in html.content
    # Downstream revalidation is answered by nginx too.
    etag = first.headers["etag"]
    assert get(front.url + "demo-pkg/", PIP_ACCEPT, If_None_Match=etag).status_code == 304


def test_file_headers_match_eggproxy_serve(front: NginxProxy) -> None:
    for name in (WHEEL, f"{WHEEL}.metadata", SDIST):
        assert get(front.url + f"demo-pkg/{name}").status_code == 200  # cache it
        direct = get(front.serve.url + f"demo-pkg/{name}")
        hit = get(front.url + f"demo-pkg/{name}")
        assert hit.content == direct.content == (front.cache_dir / "demo-pkg" / name).read_bytes()
        for header in ("content-type", "cache-control", "content-length", "accept-ranges"):
            assert hit.headers[header] == direct.headers[header], (name, header)
    ranged = get(front.url + f"demo-pkg/{WHEEL}", Range="bytes=0-9")
    assert ranged.status_code == 206 and len(ranged.content) == 10


def test_stale_pages_go_back_to_eggproxy(own_upstream: Upstream) -> None:
    """index_ttl = 1: after a second nginx's copy has expired and eggproxy revalidates."""
    require_nginx()
    upstream = own_upstream
    # eggproxy revalidates while this request waits (no stale-while-revalidate window).
    with NginxProxy(
        upstream.url, index_ttl=1, extra_config="stale_while_revalidate = 0\n"
    ) as front:
        before = get(front.url + "demo-pkg/", JSON_TYPE).json()
        upstream.add_file("demo-pkg", "demo_pkg-3.0.tar.gz", b"new release")
        # Past index_ttl, and past nginx's whole-second clock (docs/decisions/0005).
        time.sleep(2.2)
        after = get(front.url + "demo-pkg/", JSON_TYPE).json()
        names = [f["filename"] for f in after["files"]]
        assert "demo_pkg-3.0.tar.gz" in names
        assert "demo_pkg-3.0.tar.gz" not in [f["filename"] for f in before["files"]]
        statuses = [cache for _s, cache, _u in served_by(front, "/simple/demo-pkg/", 2)]
        assert statuses == ["MISS", "EXPIRED"]


def test_eggproxy_down_serves_stale_with_a_warning(upstream: Upstream) -> None:
    require_nginx()
    with NginxProxy(upstream.url, index_ttl=1) as front:
        page = get(front.url + "demo-pkg/", JSON_TYPE)
        front.serve.stop()
        time.sleep(2.2)
        stale = get(front.url + "demo-pkg/", JSON_TYPE)
        assert stale.status_code == 200 and stale.content == page.content
        assert stale.headers["warning"].startswith("110 ")
        assert stale.headers["cache-control"] == "public, max-age=0"


REFUSED = [
    "demo-pkg/.state.json",
    "demo-pkg/.upstream.json",
    f"demo-pkg/.{WHEEL}.lock",
    f"demo-pkg/.{WHEEL}.part",
    ".locks/demo-pkg",
    ".eggproxy-layout",
    "%2elocks/demo-pkg",
    "demo-pkg/%2estate.json",
]


def test_dot_files_are_refused_by_nginx(front: NginxProxy) -> None:
    assert get(front.url + "demo-pkg/", JSON_TYPE).status_code == 200
    # Make the partial file exist: nginx must refuse it all the same.
    (front.cache_dir / "demo-pkg" / f".{WHEEL}.part").write_bytes(b"half")
    for rest in REFUSED:
        status, _body = raw_get(front, path_of(front, rest))
        assert status == 403, rest
        logged = served_by(front, path_of(front, rest), 1)
        assert len(logged) == 1 and all(upstream == "-" for _s, _c, upstream in logged), rest


def test_pages_are_not_files(front: NginxProxy) -> None:
    """``index.json`` under a project is not served from disk without eggproxy deciding."""
    assert get(front.url + "demo-pkg/", JSON_TYPE).status_code == 200
    response = get(front.url + "demo-pkg/index.json")
    assert response.status_code in (400, 404)


def test_non_normalised_names_go_to_eggproxy(front: NginxProxy) -> None:
    for rest, location in (("Demo_Pkg/", "/simple/demo-pkg/"), ("demo-pkg", "/simple/demo-pkg/")):
        response = get(front.url + rest)
        assert (response.status_code, response.headers["location"]) == (301, location)
    moved = get(front.url + f"Demo.Pkg/{WHEEL}")
    assert moved.status_code == 301 and moved.headers["location"] == f"/simple/demo-pkg/{WHEEL}"


def test_a_miss_streams_through_unbuffered(own_upstream: Upstream) -> None:
    require_nginx()
    size = 8 * 2**20
    own_upstream.add_file("demo-pkg", "demo_pkg-9.0.tar.gz", size)
    with NginxProxy(own_upstream.url) as front:
        _stream_miss(front, size)


def _stream_miss(front: NginxProxy, size: int) -> None:
    response = get(front.url + "demo-pkg/demo_pkg-9.0.tar.gz")
    assert response.status_code == 200 and len(response.content) == size
    cached = front.cache_dir / "demo-pkg" / "demo_pkg-9.0.tar.gz"
    assert cached.read_bytes() == response.content
    # proxy_buffering off: nginx wrote none of it to its own temporary files.
    assert not [p for p in (front.base / "tmp" / "proxy").rglob("*") if p.is_file()]


def raw_get(proxy: NginxProxy, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
