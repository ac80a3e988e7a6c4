"""Issue 13: ``kill -9`` of ``eggproxy serve`` in the middle of a page write or a file
download leaves nothing torn to serve after a restart (docs/decisions/0014-miss-path.md).

Counts and contents only; nothing here times anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
from pathlib import Path

import pytest
import requests
from tests.integration.standalone import start_serve, wait_until
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

JSON = "application/vnd.pypi.simple.v1+json"
PROJECTS = 24  # page misses in flight when the server is killed
FILES = 40  # files listed on each page (a page write of some size)


def _get(url: str, accept: str = JSON) -> requests.Response:
    return requests.get(url, headers={"Accept": accept}, timeout=60)


def _quietly(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # killed under it: expected
        _get(url)


def test_kill_during_page_writes_leaves_pages_whole(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    with Upstream(tmp_path / "up") as upstream:
        names = [f"crashpage{i}" for i in range(PROJECTS)]
        for name in names:
            for v in range(FILES):
                upstream.add_file(name, f"{name}-{v}.0-py3-none-any.whl", 32)
        cache = tmp_path / "cache"
        server = start_serve(upstream.url, cache, workers=1)
        try:
            threads = [
                threading.Thread(target=_quietly, args=(f"{server.url}{name}/",), daemon=True)
                for name in names
            ]
            for thread in threads:
                thread.start()
            # Kill while misses are being written: some pages stored, others not yet.
            assert wait_until(lambda: len(list(cache.glob("*/index.json"))) >= 2)
        finally:
            server.stop(signal.SIGKILL, timeout=5)
        for thread in threads:
            thread.join(30)
        # The killed worker's spare files (decision 0014, round 7) stay in their
        # dot folder, outside the URL space, until a new process sweeps them.
        dead_pools = list((cache / ".spare").iterdir())
        assert dead_pools
        # Whatever is on disk parses: no torn page, no state without its pages.
        for page in cache.glob("*/index.json"):
            json.loads(page.read_bytes())
            assert (page.parent / "index.html").read_bytes().rstrip().endswith(b"</html>")
        server = start_serve(upstream.url, cache, workers=1)
        try:
            for name in names:
                reply = _get(f"{server.url}{name}/")
                assert reply.status_code == 200, name
                files = reply.json()["files"]
                assert len(files) == FILES, name
                html = _get(f"{server.url}{name}/", "text/html")
                assert html.text.count("<a ") == FILES, name
            assert not any(pool.exists() for pool in dead_pools)
        finally:
            server.stop()


def test_kill_during_download_serves_no_torn_file(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    with Upstream(tmp_path / "up") as upstream:
        filename = "crashfile-1.0-py3-none-any.whl"
        dist = upstream.add_file("crashfile", filename, 1 << 21)  # 32 chunks of 64 kB
        upstream.slow[filename] = 0.05
        cache = tmp_path / "cache"
        server = start_serve(upstream.url, cache, workers=1)
        part = cache / "crashfile" / f".{filename}.part"
        try:
            assert _get(f"{server.url}crashfile/").status_code == 200
            url = f"{server.root}/simple/crashfile/{filename}"
            thread = threading.Thread(target=_quietly, args=(url,), daemon=True)
            thread.start()
            assert wait_until(lambda: part.exists() and part.stat().st_size > 0)
        finally:
            server.stop(signal.SIGKILL, timeout=5)
        thread.join(30)
        assert not (cache / "crashfile" / filename).exists()  # never visible unverified
        upstream.slow.clear()
        server = start_serve(upstream.url, cache, workers=1)
        try:
            assert not part.exists()  # the dead holder's partial file was cleaned
            url = f"{server.root}/simple/crashfile/{filename}"
            reply = requests.get(url, timeout=60)
            assert reply.status_code == 200
            assert hashlib.sha256(reply.content).hexdigest() == dist.sha256
            again = requests.get(url, timeout=60)  # now a hit, from the disk
            assert hashlib.sha256(again.content).hexdigest() == dist.sha256
        finally:
            server.stop()
