"""Issue 13: the parsed upstream copy is reused only while the file is the one it came from."""

import json
import os
from pathlib import Path

from eggproxy.config import Config
from eggproxy.model import ProjectPage
from eggproxy.names import NormalizedName
from eggproxy.parse import project_from_json
from eggproxy.parsedpages import ParsedPages, identity
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with
from .test_proxy import DATA, FILE_URL, INDEX, JSON, META, PAGE, P, _page

P2 = NormalizedName("other")


def _proxy(tmp_path: Path) -> tuple[Proxy, FakeAdapter]:
    fake = FakeAdapter()
    fake.answers[PAGE] = (200, JSON, _page())
    fake.answers[FILE_URL] = (200, {"Content-Length": str(len(DATA))}, DATA)
    fake.answers[FILE_URL + ".metadata"] = (200, {}, META)
    config = Config(cache_dir=tmp_path / "cache", index=INDEX, negative_ttl=0)
    proxy = Proxy(config, session=session_with(fake))
    proxy.prepare()
    return proxy, fake


def test_page_passed_along_equals_a_fresh_parse(tmp_path: Path) -> None:
    proxy, _fake = _proxy(tmp_path)
    proxy.page(P, "json")
    remembered = proxy._upstream_page(P)  # from memory: what the fetch handed over
    stored = (tmp_path / "cache" / P / ".upstream.json").read_text()
    assert remembered == project_from_json(stored, "file:///", P)


def test_file_miss_after_page_miss_parses_nothing(tmp_path: Path, monkeypatch: object) -> None:
    proxy, _fake = _proxy(tmp_path)
    proxy.page(P, "json")
    import eggproxy.proxy as module

    def refuse(*_args: object) -> ProjectPage:
        raise AssertionError("parsed again")

    setattr(module, "project_from_json", refuse)  # noqa: B010 - restored below
    try:
        assert proxy.file(P, "demo_pkg-1.0.tar.gz").read_bytes() == DATA
    finally:
        module.project_from_json = project_from_json


def test_replaced_file_is_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / ".upstream.json"
    path.write_text("{}")
    pages = ParsedPages()
    page = ProjectPage(name=P2, files=())
    pages.put(P2, identity(path), page)
    assert pages.get(P2, path) is page
    tmp = tmp_path / "new"
    tmp.write_text(json.dumps({"files": []}))
    os.replace(tmp, path)  # as write_atomic does, here or in another process
    assert pages.get(P2, path) is None
    path.unlink()
    assert pages.get(P2, path) is None


def test_bounded(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text("{}")
    pages = ParsedPages(limit=2)
    for name in ("a", "b", "c"):
        pages.put(NormalizedName(name), identity(path), ProjectPage(name=name, files=()))
    assert pages.get(NormalizedName("a"), path) is None
    assert pages.get(NormalizedName("c"), path) is not None


def test_rich_page_round_trips(tmp_path: Path) -> None:
    proxy, fake = _proxy(tmp_path)
    files = [
        {
            "filename": f"demo_pkg-{v}.tar.gz",
            "url": f"https://files.test/demo_pkg-{v}.tar.gz",
            "hashes": {"sha256": "ab" * 32},
            "size": 10,
            "requires-python": ">=3.8",
            "yanked": "broken" if v == "2.0" else False,
            "upload-time": "2024-01-01T00:00:00Z",
            "core-metadata": {"sha256": "cd" * 32} if v == "1.0" else False,
            "provenance": "https://files.test/p" if v == "1.0" else None,
        }
        for v in ("1.0", "2.0", "3.0rc1")
    ]
    body = {"meta": {"api-version": "1.4", "tracks": ["https://x.test/simple/demo-pkg/"]}}
    body |= {"name": "Demo.Pkg", "files": files}
    fake.answers[PAGE] = (200, JSON, json.dumps(body).encode())
    proxy.page(P, "json")
    stored = (tmp_path / "cache" / P / ".upstream.json").read_text()
    assert proxy._upstream_page(P) == project_from_json(stored, "file:///", P)
