"""Quick tests of the test double itself: fixture builders and the fake upstream index."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tests.integration.fixtures import build_projects
from tests.integration.upstream import JSON_V1, Upstream, negotiate

pytestmark = pytest.mark.integration

PIP_JSON_ACCEPT = f"{JSON_V1}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("upstream-files")
    build_projects(d)
    return d


@pytest.fixture
def upstream(files_dir: Path) -> Iterator[Upstream]:
    with Upstream(files_dir) as up:
        yield up


def request(
    url: str, **headers: str
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send a GET (``If_None_Match=`` -> ``If-None-Match``); return connection and response."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=10)
    conn.request("GET", parts.path, headers={k.replace("_", "-"): v for k, v in headers.items()})
    return conn, conn.getresponse()


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects: status, headers, body."""
    conn, resp = request(url, **headers)
    try:
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Anchors(HTMLParser):
    """Collects ``<a>`` attributes and text, and ``<meta>`` tags."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.meta: dict[str | None, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))
        elif tag == "meta":
            self.meta[dict(attrs).get("name")] = dict(attrs).get("content")

    def handle_data(self, data: str) -> None:
        if self.links and data.strip():
            self.links[-1]["text"] = data.strip()


def parse_html(body: bytes) -> Anchors:
    parser = Anchors()
    parser.feed(body.decode())
    return parser


def test_build_projects(tmp_path: Path) -> None:
    projects = build_projects(tmp_path)
    assert {p: sorted(f.name for f in fs) for p, fs in projects.items()} == {
        "demo-pkg": [
            "demo_pkg-0.9-py3-none-any.whl",
            "demo_pkg-1.0-py3-none-any.whl",
            "demo_pkg-1.0.tar.gz",
            "demo_pkg-2.0-py3-none-any.whl",
        ],
        "dep-pkg": ["dep_pkg-1.0-py3-none-any.whl"],
        "sdist-only": ["sdist_only-1.0.tar.gz", "sdist_only-1.1.zip"],
        "egg-only": ["egg_only-1.0-py3.11.egg"],
        "dotted-name": ["dotted_name-1.0-py3-none-any.whl"],
    }
    for wheel in (f for fs in projects.values() for f in fs if f.suffix == ".whl"):
        with zipfile.ZipFile(wheel) as zf:
            dist_info = next(n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n)
            meta = zf.read(f"{dist_info}/METADATA")
            assert wheel.with_name(wheel.name + ".metadata").read_bytes() == meta
            for line in zf.read(f"{dist_info}/RECORD").decode().splitlines():
                name, digest, size = line.split(",")
                if digest:
                    data = zf.read(name)
                    assert len(data) == int(size)
                    assert digest == "sha256=" + urlsafe_sha256(data)
    dotted = tmp_path / "dotted-name/dotted_name-1.0-py3-none-any.whl.metadata"
    assert "Name: Dotted.Name\n" in dotted.read_text()
    with zipfile.ZipFile(projects["egg-only"][0]) as zf:
        assert {"EGG-INFO/PKG-INFO", "egg_only.py"} <= set(zf.namelist())
    again = tmp_path / "again"
    build_projects(again)
    assert (again / "sdist-only/sdist_only-1.0.tar.gz").read_bytes() == (
        tmp_path / "sdist-only/sdist_only-1.0.tar.gz"
    ).read_bytes(), "archives are reproducible"


def urlsafe_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_negotiate() -> None:
    assert negotiate(PIP_JSON_ACCEPT) == JSON_V1
    assert negotiate(PIP_JSON_ACCEPT, allow_json=False) == "application/vnd.pypi.simple.v1+html"
    assert negotiate("") == negotiate("*/*") == negotiate("text/html") == "text/html"
    assert negotiate(f"text/html, {JSON_V1}; q=0.5") == "text/html"


def test_json_pages(upstream: Upstream, files_dir: Path) -> None:
    status, headers, body = get(upstream.url, Accept=JSON_V1)
    assert status == 200 and headers["Content-Type"] == JSON_V1
    root = json.loads(body)
    assert root["meta"]["api-version"] == "1.0"
    assert {p["name"] for p in root["projects"]} >= {"demo-pkg", "Dotted.Name", "egg-only"}

    status, _, body = get(upstream.url + "demo-pkg/", Accept=PIP_JSON_ACCEPT)
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.1" and page["versions"] == ["0.9", "1.0", "2.0"]
    files = {f["filename"]: f for f in page["files"]}
    assert files["demo_pkg-0.9-py3-none-any.whl"]["yanked"] == "broken build"
    assert files["demo_pkg-1.0-py3-none-any.whl"]["yanked"] is False
    assert files["demo_pkg-2.0-py3-none-any.whl"]["requires-python"] == ">=3.8"
    assert "core-metadata" not in files["demo_pkg-1.0.tar.gz"]
    for name, f in files.items():
        assert f["url"].startswith(upstream.root + "/packages/")
        _, _, data = get(f["url"])
        assert hashlib.sha256(data).hexdigest() == f["hashes"]["sha256"]
        assert len(data) == f["size"] and f["upload-time"].endswith("Z")
        if name.endswith(".whl"):
            _, _, meta = get(f["url"] + ".metadata")
            assert hashlib.sha256(meta).hexdigest() == f["core-metadata"]["sha256"]
            assert f["dist-info-metadata"] == f["core-metadata"]
    _, _, body = get(upstream.url + "dotted-name/", Accept=JSON_V1)
    assert json.loads(body)["name"] == "Dotted.Name"
    # Without a JSON Accept the json-mode upstream falls back to HTML.
    status, headers, body = get(upstream.url + "demo-pkg/")
    assert headers["Content-Type"].startswith("text/html") and b"<a " in body


def test_html_pages(files_dir: Path) -> None:
    with Upstream(files_dir, fmt="html") as up:
        status, headers, body = get(up.url, Accept=PIP_JSON_ACCEPT)
        assert status == 200 and "json" not in headers["Content-Type"]
        root = parse_html(body)
        assert {"href": "demo-pkg/", "text": "demo-pkg"} in root.links
        assert {"href": "dotted-name/", "text": "Dotted.Name"} in root.links

        _, _, body = get(up.url + "demo-pkg/", Accept=PIP_JSON_ACCEPT)
        assert b'data-requires-python="&gt;=3.8"' in body
        page = parse_html(body)
        assert page.meta["pypi:repository-version"] == "1.0"
        links = {str(a["text"]): a for a in page.links}
        assert links["demo_pkg-0.9-py3-none-any.whl"]["data-yanked"] == "broken build"
        assert "data-yanked" not in links["demo_pkg-1.0-py3-none-any.whl"]
        assert links["demo_pkg-2.0-py3-none-any.whl"]["data-requires-python"] == ">=3.8"
        for name, a in links.items():
            url, _, fragment = str(a["href"]).partition("#")
            _, _, data = get(url)
            assert fragment == "sha256=" + hashlib.sha256(data).hexdigest()
            if name.endswith(".whl"):
                _, _, meta = get(url + ".metadata")
                expected = "sha256=" + hashlib.sha256(meta).hexdigest()
                assert a["data-core-metadata"] == a["data-dist-info-metadata"] == expected


def test_redirects_404_and_etag(upstream: Upstream) -> None:
    for path in ("Dotted.Name/", "DEMO_pkg", "demo-pkg"):
        status, headers, _ = get(upstream.url + path)
        assert status == 301, path
    assert get(upstream.url + "Dotted.Name/")[1]["Location"] == upstream.url + "dotted-name/"
    assert get(upstream.url + "no-such-project/")[0] == 404
    assert get(upstream.root + "/packages/00/nothing.whl")[0] == 404

    status, headers, body = get(upstream.url + "demo-pkg/", Accept=JSON_V1)
    etag = headers["ETag"]
    status, headers, body = get(upstream.url + "demo-pkg/", Accept=JSON_V1, If_None_Match=etag)
    assert (status, body, headers["ETag"]) == (304, b"", etag)
    html_status = get(upstream.url + "demo-pkg/", If_None_Match=etag)[0]
    assert html_status == 200, "the HTML variant has its own ETag"


def test_hits_count_gets(upstream: Upstream) -> None:
    name = "dep_pkg-1.0-py3-none-any.whl"
    path = upstream.file_path(name)
    assert upstream.hits[path] == 0
    get(upstream.file_url(name))
    get(upstream.file_url(name))
    get(upstream.url + "dep-pkg/")
    assert upstream.hits[path] == 2 and upstream.hits["/simple/dep-pkg/"] == 1


def test_faults(upstream: Upstream) -> None:
    name = "demo_pkg-1.0-py3-none-any.whl"
    good = get(upstream.file_url(name))[2]
    upstream.corrupt.add(name)
    bad = get(upstream.file_url(name))[2]
    assert len(bad) == len(good) and bad[:-1] == good[:-1] and bad[-1] != good[-1]
    upstream.corrupt.clear()

    upstream.truncate.add(name)
    conn, resp = request(upstream.file_url(name))
    assert resp.getheader("Content-Length") == str(len(good))
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == len(good) // 2
    conn.close()
    upstream.truncate.clear()

    upstream.malformed.add("Demo_Pkg")
    with pytest.raises(json.JSONDecodeError):
        json.loads(get(upstream.url + "demo-pkg/", Accept=JSON_V1)[2])
    assert b"<a" not in get(upstream.url + "demo-pkg/")[2]
    upstream.malformed.clear()

    upstream.down = True
    assert get(upstream.url)[0] == get(upstream.file_url(name))[0] == 503
    upstream.down = False

    upstream.slow[name] = 0.2
    upstream.delay_pages = 0.2
    start = time.monotonic()
    assert get(upstream.file_url(name))[2] == good
    get(upstream.url)
    assert time.monotonic() - start >= 0.4


def test_add_file_and_stop(tmp_path: Path) -> None:
    up = Upstream(tmp_path)
    dist = up.add_file("big-pkg", "big_pkg-1.0.tar.gz", 300_000)
    status, _, data = get(up.file_url("big_pkg-1.0.tar.gz"))
    assert status == 200 and hashlib.sha256(data).hexdigest() == dist.sha256
    page = json.loads(get(up.url + "big-pkg/", Accept=JSON_V1)[2])
    assert page["versions"] == ["1.0"] and page["files"][0]["size"] == 300_000

    up.slow["big_pkg-1.0.tar.gz"] = 30  # a handler stuck sleeping must not block stop()
    conn, resp = request(up.file_url("big_pkg-1.0.tar.gz"))
    start = time.monotonic()
    up.stop()
    up.stop()
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()
    assert time.monotonic() - start < 5
    with pytest.raises(OSError):
        get(up.url)


def pip(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    # Caches off, as in every client run: a wheel built earlier must not stand in for a download.
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    cmd += map(str, args)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_wheel_installs(files_dir: Path, tmp_path: Path) -> None:
    wheel = files_dir / "demo-pkg" / "demo_pkg-2.0-py3-none-any.whl"
    pip("install", "--no-index", "--no-deps", "--target", tmp_path, wheel)
    assert '__version__ = "2.0"' in (tmp_path / "demo_pkg" / "__init__.py").read_text()
    assert (tmp_path / "demo_pkg-2.0.dist-info" / "RECORD").exists()


@pytest.mark.parametrize("sdist", ["sdist_only-1.0.tar.gz", "sdist_only-1.1.zip"])
def test_sdist_builds(files_dir: Path, tmp_path: Path, sdist: str) -> None:
    """Built by pip through the sdist's dependency-free in-tree backend."""
    sdist_path = files_dir / "sdist-only" / sdist
    pip("wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", tmp_path, sdist_path)
    version = sdist.removesuffix(".tar.gz").removesuffix(".zip").split("-")[1]
    assert (tmp_path / f"sdist_only-{version}-py3-none-any.whl").exists()


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_pip_resolves_from_upstream(files_dir: Path, tmp_path: Path, fmt: str) -> None:
    """pip itself accepts the pages: skips the yanked and picks wheels, deps and sdists."""
    with Upstream(files_dir, fmt=fmt) as up:
        target = tmp_path / "target"
        pip("install", "--index-url", up.url, "--target", target, "demo-pkg==2.0", "sdist-only")
        installed = sorted(p.name.split(".dist-info")[0] for p in target.glob("*.dist-info"))
        assert installed == ["demo_pkg-2.0", "dep_pkg-1.0", "sdist_only-1.1"]
        assert up.hits[up.file_path("sdist_only-1.1.zip")] == 1
        assert up.hits[up.file_path("demo_pkg-1.0.tar.gz")] == 0
