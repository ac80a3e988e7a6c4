"""The core with several sources: private first, local folder, credentials kept secret."""

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from eggproxy.config import load_config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

PRIVATE = "https://private.test/simple/"
PUBLIC = "https://public.test/simple/"
SECRET = "hunter2-secret"
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
P = NormalizedName("shared")


def _page(url: str, data: bytes, filename: str) -> bytes:
    return json.dumps(
        {
            "meta": {"api-version": "1.1"},
            "name": "shared",
            "files": [
                {
                    "filename": filename,
                    "url": url,
                    "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                    "size": len(data),
                }
            ],
        }
    ).encode()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Proxy, FakeAdapter, Path]:
    eggs = tmp_path / "eggs"
    eggs.mkdir()
    conf = tmp_path / "eggproxy.conf"
    conf.write_text(
        f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = {PUBLIC}\n"
        f"[source:private]\nurl = {PRIVATE}\nusername = alice\npassword = {SECRET}\n"
        f"[source:local]\npath = {eggs}\n"
        f"[source:public]\nurl = {PUBLIC}\n"
    )
    adapter = FakeAdapter()
    proxy = Proxy(load_config(conf, environ={}), session=session_with(adapter))
    proxy.prepare()
    return proxy, adapter, eggs


def test_private_source_shadows_public(setup: tuple[Proxy, FakeAdapter, Path]) -> None:
    proxy, adapter, _eggs = setup
    private_file = b"private"
    adapter.answers[PRIVATE + "shared/"] = (
        200,
        JSON,
        _page("https://private.test/f/shared-1.0.tar.gz", private_file, "shared-1.0.tar.gz"),
    )
    adapter.answers["https://private.test/f/shared-1.0.tar.gz"] = (200, {}, private_file)
    result = proxy.page(P, "json")
    data = json.loads(result.path.read_bytes())
    assert data["meta"]["_source"] == "private"
    assert [f["filename"] for f in data["files"]] == ["shared-1.0.tar.gz"]
    assert PUBLIC + "shared/" not in adapter.calls
    assert proxy.file(P, "shared-1.0.tar.gz").read_bytes() == private_file
    # Credentials go in a header, to the private source only.
    assert all("Authorization" in r.headers for r in adapter.requests if "private" in r.url)


def test_local_folder_files_appear_on_next_request(
    setup: tuple[Proxy, FakeAdapter, Path],
) -> None:
    proxy, _adapter, eggs = setup
    (eggs / "shared-2.0.tar.gz").write_bytes(b"local sdist")
    os.utime(eggs, (1, 1))  # older than any fetch
    result = proxy.page(P, "html")
    assert "shared-2.0.tar.gz" in result.path.read_text()
    assert proxy.fresh_page(P, "html") is not None
    (eggs / "shared-2.1.tar.gz").write_bytes(b"newer")
    assert proxy.fresh_page(P, "html") is None  # the folder changed since the fetch
    result = proxy.page(P, "html")
    assert "shared-2.1.tar.gz" in result.path.read_text()
    assert proxy.file(P, "shared-2.1.tar.gz").read_bytes() == b"newer"


def test_with_a_local_folder_caches_in_front_must_ask_every_time(
    setup: tuple[Proxy, FakeAdapter, Path],
) -> None:
    """Only eggproxy notices a new file in the folder: pages say max-age=0 (mod_cache, nginx)."""
    proxy, _adapter, eggs = setup
    (eggs / "shared-2.0.tar.gz").write_bytes(b"local sdist")
    os.utime(eggs, (1, 1))
    assert proxy.page(P, "json").max_age == 0
    fresh = proxy.fresh_page(P, "json")
    assert fresh is not None and fresh.max_age == 0


def test_credentials_never_leak(
    setup: tuple[Proxy, FakeAdapter, Path], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, adapter, _eggs = setup
    caplog.set_level(logging.DEBUG)
    adapter.answers[PRIVATE + "shared/"] = (
        200,
        JSON,
        _page("https://private.test/f/shared-1.0.tar.gz", b"x", "shared-1.0.tar.gz"),
    )
    adapter.answers["https://private.test/f/shared-1.0.tar.gz"] = (503, {}, b"")
    proxy.page(P, "json")
    with pytest.raises(Exception) as info:
        proxy.file(P, "shared-1.0.tar.gz")
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    for path in proxy.cache.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_credentials_only_go_to_the_source_host(setup: tuple[Proxy, FakeAdapter, Path]) -> None:
    proxy, adapter, _eggs = setup
    elsewhere = "https://files.elsewhere.test/shared-1.0.tar.gz"
    adapter.answers[PRIVATE + "shared/"] = (
        200,
        JSON,
        _page(elsewhere, b"data", "shared-1.0.tar.gz"),
    )
    adapter.answers[elsewhere] = (200, {}, b"data")
    proxy.page(P, "json")
    proxy.file(P, "shared-1.0.tar.gz")
    (file_request,) = [r for r in adapter.requests if r.url == elsewhere]
    assert "Authorization" not in file_request.headers
