"""``eggproxy export`` then ``import`` between two caches, and the page-merging rule."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests

from eggproxy.cache import Freshness, freshness
from eggproxy.config import Config
from eggproxy.model import DistFile, ProjectPage
from eggproxy.names import NormalizedName
from eggproxy.offline.export import ExportError, export
from eggproxy.offline.merge import NotAnExport, import_tree, merge_pages
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

INDEX = "https://up.test/simple/"
P = NormalizedName("demo-pkg")
WHEEL, SDIST = "demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"
DATA = {WHEEL: b"wheel bytes" * 50, SDIST: b"sdist bytes" * 50}
META = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n"
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json", "ETag": '"v1"'}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _upstream_page() -> bytes:
    files = []
    for name, data in DATA.items():
        item = {
            "filename": name,
            "url": f"https://files.test/{name}",
            "hashes": {"sha256": _sha(data)},
        }
        if name == WHEEL:
            item["core-metadata"] = {"sha256": _sha(META)}
        files.append(item)
    page = {"meta": {"api-version": "1.0", "_last-serial": 7}, "name": "demo-pkg", "files": files}
    return json.dumps(page).encode()


def _proxy(root: Path, adapter: FakeAdapter | None = None) -> Proxy:
    adapter = adapter or FakeAdapter()
    adapter.fail = None if adapter.answers else requests.ConnectionError  # empty: offline
    config = Config(cache_dir=root, index=INDEX, index_ttl=600)
    proxy = Proxy(config, session=session_with(adapter))
    proxy.prepare()
    return proxy


@pytest.fixture
def online(tmp_path: Path) -> Proxy:
    """A cache holding the page, the wheel and its metadata (not the sdist)."""
    adapter = FakeAdapter()
    adapter.answers[INDEX + "demo-pkg/"] = (200, JSON, _upstream_page())
    adapter.answers[f"https://files.test/{WHEEL}"] = (200, {}, DATA[WHEEL])
    adapter.answers[f"https://files.test/{WHEEL}.metadata"] = (200, {}, META)
    proxy = _proxy(tmp_path / "online", adapter)
    proxy.file(P, WHEEL)
    proxy.file(P, WHEEL + ".metadata")
    return proxy


def test_export_lists_only_cached_files_with_relative_links(online: Proxy, tmp_path: Path) -> None:
    summary = export(online, tmp_path / "out")
    assert (summary.projects, summary.files, summary.copied) == (1, 1, 2)
    project = tmp_path / "out" / "simple" / "demo-pkg"
    assert sorted(p.name for p in project.iterdir()) == [
        WHEEL,
        WHEEL + ".metadata",
        "index.html",
        "index.json",
    ]
    page = json.loads((project / "index.json").read_text())
    assert [(f["url"], f["hashes"]) for f in page["files"]] == [
        (WHEEL, {"sha256": _sha(DATA[WHEEL])})
    ]
    assert page["meta"]["_eggproxy-fetched"].endswith("Z")
    assert f'href="{WHEEL}#sha256=' in (project / "index.html").read_text()
    assert 'href="demo-pkg/"' in (tmp_path / "out" / "simple" / "index.html").read_text()
    # Again: nothing to copy, files are immutable.
    assert export(online, tmp_path / "out").copied == 0
    with pytest.raises(ExportError, match="not cached: other"):
        export(online, tmp_path / "out", [NormalizedName("other")])


def test_import_makes_the_export_servable_offline(online: Proxy, tmp_path: Path) -> None:
    export(online, tmp_path / "out")
    offline = _proxy(tmp_path / "offline")
    summary = import_tree(offline, tmp_path / "out")
    assert (
        summary.line()
        == "imported 2 files (0 already cached) of 1 projects, 1 pages written, 0 refused"
    )
    # Stale at once, and served stale because the upstream cannot be reached.
    mtime = (tmp_path / "offline" / "demo-pkg" / "index.json").stat().st_mtime
    assert freshness(mtime, 600, offline.clock()) is Freshness.STALE
    result = offline.page(P, "json")
    assert result.outcome == "stale"
    listed = json.loads(result.path.read_text())["files"]
    assert [f["filename"] for f in listed] == [WHEEL]
    assert listed[0]["core-metadata"] == {"sha256": _sha(META)}
    assert offline.file(P, WHEEL).read_bytes() == DATA[WHEEL]
    # Importing again changes nothing and overwrites nothing.
    again = import_tree(offline, tmp_path / "out")
    assert (again.imported, again.present, again.refused) == (0, 2, [])


def test_files_that_do_not_match_are_refused(online: Proxy, tmp_path: Path) -> None:
    export(online, tmp_path / "out")
    (tmp_path / "out" / "simple" / "demo-pkg" / WHEEL).write_bytes(b"tampered")
    offline = _proxy(tmp_path / "offline")
    summary = import_tree(offline, tmp_path / "out")
    assert len(summary.refused) == 1
    assert summary.refused[0].startswith(f"demo-pkg/{WHEEL}: expected sha256={_sha(DATA[WHEEL])}")
    assert offline.cached_file(P, WHEEL) is None
    assert not list((tmp_path / "offline" / "demo-pkg").glob(".tmp-*"))
    listed = json.loads((tmp_path / "offline" / "demo-pkg" / "index.json").read_text())["files"]
    assert listed == []  # the page lists only what is in the cache


def test_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(NotAnExport):
        import_tree(_proxy(tmp_path / "cache"), tmp_path)


def _page(serial: int | None, *names: str) -> ProjectPage:
    files = tuple(DistFile(n, f"https://files.test/{n}", {"sha256": "0" * 64}) for n in names)
    return ProjectPage("demo-pkg", files, versions=("1.0",), last_serial=serial)


@pytest.mark.parametrize(
    ("cached", "imported", "winner", "files"),
    [
        # A higher serial wins whatever the fetch times; files only the loser lists and that
        # are cached stay listed.
        ((_page(5, "a", "b"), 200.0), (_page(6, "c"), 100.0), "imported", ["c", "a"]),
        ((_page(6, "a", "b"), 100.0), (_page(5, "c"), 200.0), "cached", ["a", "b", "c"]),
        # Without serials on both, the later fetch wins.
        ((_page(None, "a"), 100.0), (_page(6, "c"), 200.0), "imported", ["c", "a"]),
    ],
)
def test_merge_rule(
    cached: tuple[ProjectPage, float],
    imported: tuple[ProjectPage, float],
    winner: str,
    files: list[str],
) -> None:
    merged = merge_pages(cached, imported, lambda name: name in {"a", "c"})
    assert merged is not None
    page, fetched = merged
    assert [f.filename for f in page.files] == files
    assert fetched == (imported if winner == "imported" else cached)[1]
    assert page.versions is None  # PEP 700 versions follow the merged files


def test_merge_keeps_the_cached_page_when_it_says_it_all() -> None:
    cached = (_page(6, "a", "c"), 100.0)
    assert merge_pages(cached, (_page(5, "c"), 50.0), lambda name: True) is None
    assert merge_pages(None, cached, lambda name: True) == cached
