"""Issue 13: pages a power loss tore are found at the first start after the boot, once."""

import json
import time
from pathlib import Path

import pytest

from eggproxy import powerloss
from eggproxy.config import Config
from eggproxy.proxy import Proxy


@pytest.fixture
def boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    boot_id, stat = tmp_path / "boot_id", tmp_path / "stat"
    boot_id.write_text("boot-1\n")
    stat.write_text(f"cpu  1 2 3\nbtime {int(time.time())}\n")
    monkeypatch.setattr(powerloss, "BOOT_ID", boot_id)
    monkeypatch.setattr(powerloss, "PROC_STAT", stat)
    return boot_id


def _pages(cache: Path, project: str, json_page: bytes, html: bytes) -> None:
    (cache / project).mkdir(parents=True)
    (cache / project / "index.json").write_bytes(json_page)
    (cache / project / "index.html").write_bytes(html)
    (cache / project / ".state.json").write_text('{"url": "x"}')


def _proxy(cache: Path) -> Proxy:
    proxy = Proxy(Config(cache_dir=cache, index="https://up.test/simple/"))
    proxy.prepare()
    return proxy


def test_torn_pages_removed_once_per_boot(tmp_path: Path, boot: Path) -> None:
    cache = tmp_path / "cache"
    whole_html = b"<!DOCTYPE html>\n<html><body></body>\n</html>\n"
    _pages(cache, "whole", json.dumps({"files": []}).encode(), whole_html)
    _pages(cache, "empty", b"", b"")  # renamed into place, bytes never written
    _pages(cache, "cut", b'{"files": [', whole_html)
    _proxy(cache)
    assert (cache / "whole" / "index.json").exists()
    for torn in ("empty", "cut"):
        assert not (cache / torn / "index.json").exists()  # fetched again when asked
        assert not (cache / torn / ".state.json").exists()  # no ETag to keep a torn page
    # Later starts in the same boot read nothing back.
    _pages(cache, "later", b"", b"")
    _proxy(cache)
    assert (cache / "later" / "index.json").exists()
    boot.write_text("boot-2\n")  # the machine went down again
    _proxy(cache)
    assert not (cache / "later" / "index.json").exists()


def test_pages_written_long_before_the_boot_are_not_read(tmp_path: Path, boot: Path) -> None:
    cache = tmp_path / "cache"
    _pages(cache, "old", b"", b"")
    assert powerloss.torn_pages(cache, time.time() + 3600) == []
    assert powerloss.torn_pages(cache, 0.0) == [cache / "old"]


def test_no_boot_id_no_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(powerloss, "BOOT_ID", tmp_path / "missing")
    assert powerloss.first_start_since_boot(tmp_path) is None
