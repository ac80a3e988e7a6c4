"""Issue 16: a full cache disk is a deliberate 507, on both front ends.

The cache lives on a small tmpfs mounted by the test (root is needed; skipped otherwise),
filled up after a few files were cached.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.integration import apache
from tests.integration.standalone import start_serve
from tests.integration.upstream import Upstream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("upstream", ["json"], indirect=True),
]

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
SDIST = "demo_pkg-1.0.tar.gz"


@dataclass
class FullDisk:
    url: str
    cache_dir: Path
    log: Any  # () -> str: the front end's logs

    def log_text(self) -> str:
        return str(self.log())


@contextlib.contextmanager
def tmpfs(path: Path, owner: str | None = None) -> Iterator[None]:
    """A 2 MiB tmpfs on ``path`` for the test's duration."""
    options = "size=2m,mode=755"
    if owner is not None:
        user = pwd.getpwnam(owner)
        options += f",uid={user.pw_uid},gid={user.pw_gid}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(directory: Path) -> None:
    """Write a file until the file system is full."""
    fd = os.open(directory / ".test-filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            for _ in range(1 << 12):  # bounded: 2 MiB of writes at most per size
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


@pytest.fixture(params=["apache", "serve"])
def front(request: pytest.FixtureRequest, upstream: Upstream, tmp_path: Path) -> Iterator[FullDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if request.param == "serve":
        cache = tmp_path / "cache"
        cache.mkdir()
        with tmpfs(cache):
            server = start_serve(upstream.url, cache, timeout=10)
            try:
                yield FullDisk(server.url, cache, server.log_text)
            finally:
                server.stop()
        return
    apache.require_apache()
    site: Path = request.getfixturevalue("apache_site")
    proxy = apache.ApacheProxy(site, upstream.url, start=False)
    try:
        with tmpfs(proxy.cache_dir, owner=apache.RUN_AS):
            proxy.start()
            try:
                yield FullDisk(proxy.url, proxy.cache_dir, proxy.error_log_text)
            finally:
                proxy.stop()
    finally:
        proxy.cleanup()


def get(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=60)


def leftovers(cache_dir: Path) -> list[str]:
    return [
        str(p.relative_to(cache_dir))
        for p in cache_dir.rglob("*")
        if p.name.endswith((".part", ".size")) or p.name.startswith(".tmp-")
    ]


def test_full_disk_is_507_and_cached_content_still_served(
    front: FullDisk, upstream: Upstream
) -> None:
    page = get(front.url + "demo-pkg/")
    wheel = get(front.url + f"demo-pkg/{WHEEL}")
    assert page.status_code == wheel.status_code == 200
    fill(front.cache_dir)

    # What is cached is still served.
    assert get(front.url + "demo-pkg/").content == page.content
    assert get(front.url + f"demo-pkg/{WHEEL}").content == wheel.content
    # What is not cannot be stored: a deliberate 507 with a one-line reason.
    for path in (f"demo-pkg/{SDIST}", "dep-pkg/"):
        response = get(front.url + path)
        assert response.status_code == 507, (path, response.text)
        text = response.text.strip()
        assert "disk full" in text and "\n" not in text
    assert not (front.cache_dir / "demo-pkg" / SDIST).exists()
    assert leftovers(front.cache_dir) == []
    log = front.log_text()
    assert "Traceback" not in log and "Errno 28" not in log
    assert sum(1 for line in log.splitlines() if f"{SDIST} -> 507" in line) == 1, log

    # Room again: the next request fetches it.
    (front.cache_dir / ".test-filler").unlink()
    sdist = get(front.url + f"demo-pkg/{SDIST}")
    assert sdist.status_code == 200
    assert sdist.content == upstream.file(SDIST).path.read_bytes()


@pytest.mark.parametrize("front", ["serve"], indirect=True)
def test_serve_warns_when_the_cache_disk_is_nearly_full(front: FullDisk) -> None:
    assert "cache disk nearly full" in front.log_text()
