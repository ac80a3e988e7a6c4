"""``eggproxy_update``, the cron entry point, run as a command against a real upstream."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from tests.integration.upstream import Upstream
from tests.support import free_port

from eggproxy.config import load_config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "eggproxy_update"


def _run(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def _run_on_terminal(conf: Path, *args: str, limit: float = 120.0) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal, as a person would; return all it wrote."""
    main, child = pty.openpty()
    # A terminal has a size (a fresh pty's is 0x0, where tqdm draws nothing).
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [str(SCRIPT), "-c", str(conf), *args],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return proc.wait(30), output.decode(errors="replace")


@pytest.fixture
def filled(tmp_path: Path, upstream: Upstream) -> Path:
    """A configuration whose cache holds the root page and two project pages."""
    conf = tmp_path / "eggproxy.conf"
    conf.write_text(f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = {upstream.url}\n")
    proxy = Proxy(load_config(conf))
    proxy.prepare()
    proxy.page(None, "html")
    for name in ("demo-pkg", "dep-pkg"):
        proxy.page(NormalizedName(name), "json")
    return conf


def test_update_revalidates_and_summarises(filled: Path, upstream: Upstream) -> None:
    before = dict(upstream.hits)
    result = _run(filled, "--max-age", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "checked 3 of 3 cached pages: changed 0, unchanged 3, failed 0\n"
    # Not a terminal: no progress and no line per page, the summary alone.
    assert result.stderr == ""
    assert upstream.hits["/simple/demo-pkg/"] == before["/simple/demo-pkg/"] + 1
    # Conditional requests: every page was asked for with its ETag.
    conditional = [h for _m, path, h in upstream.requests if path == "/simple/demo-pkg/"]
    assert "If-None-Match" in conditional[-1]
    # Nothing is due within update_interval (24 hours by default).
    expected = "checked 0 of 3 cached pages: changed 0, unchanged 0, failed 0"
    assert _run(filled).stdout.strip() == expected


def test_update_reports_failures_and_gone_projects(filled: Path, upstream: Upstream) -> None:
    del upstream.projects["dep-pkg"]
    result = _run(filled, "--max-age", "0")
    assert result.returncode == 0, result.stderr
    assert "gone upstream: dep-pkg" in result.stdout
    upstream.down = True
    result = _run(filled, "--max-age", "0", "-q")
    assert result.returncode == 1
    assert result.stdout.strip().endswith("failed 3")
    # One line per failed page, naming the source and why; no urllib3 retry chatter.
    failures = result.stderr.strip().splitlines()
    assert len(failures) == 3, result.stderr
    assert all('upstream "upstream" ' in line for line in failures), result.stderr
    assert "Retrying" not in result.stderr and "urllib3" not in result.stderr


def test_unreachable_upstream_is_one_line_per_page(filled: Path, tmp_path: Path) -> None:
    dead = tmp_path / "dead.conf"
    index = f"http://127.0.0.1:{free_port()}/simple/"
    dead.write_text(f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = {index}\n")
    result = _run(dead, "--max-age", "0")
    assert result.returncode == 1
    assert result.stdout == "checked 3 of 3 cached pages: changed 0, unchanged 0, failed 3\n"
    failures = result.stderr.strip().splitlines()
    assert len(failures) == 3, result.stderr  # urllib3's "Retrying (Retry(...))" is silenced
    for line in failures:
        assert line.endswith('failed: upstream "upstream" unreachable: connection refused')


def test_quiet_prints_nothing_unless_something_failed(filled: Path, upstream: Upstream) -> None:
    del upstream.projects["dep-pkg"]  # gone is in the summary, not a failure
    result = _run(filled, "--max-age", "0", "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_negative_max_age_is_refused(filled: Path, upstream: Upstream) -> None:
    before = len(upstream.requests)
    result = _run(filled, "--max-age", "-1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--max-age" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len(upstream.requests) == before


def test_progress_bar_on_a_terminal(filled: Path, upstream: Upstream) -> None:
    status, output = _run_on_terminal(filled, "--max-age", "0")
    assert status == 0, output
    # tqdm's bar: pages done of total, with the page just done after it.
    assert "update" in output and "3/3" in output, output
    assert "page" in output
    assert "checked 3 of 3 cached pages" in output
    # -q on a terminal: no bar either.
    status, output = _run_on_terminal(filled, "--max-age", "0", "-q")
    assert (status, output) == (0, "")


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("[eggproxy]\nindex_ttl = soon\n")
    result = _run(conf)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "index_ttl" in result.stderr


def _page_hits(upstream: Upstream) -> int:
    return sum(
        n for path, n in upstream.hits.items() if path.startswith("/simple/") and path != "/simple/"
    )


def test_update_asks_the_root_serials_and_fetches_only_what_changed(
    tmp_path: Path, upstream: Upstream
) -> None:
    conf = tmp_path / "eggproxy.conf"
    conf.write_text(
        f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = {upstream.url}\nupdate_via_root = yes\n"
    )
    proxy = Proxy(load_config(conf))
    proxy.prepare()
    for name in ("demo-pkg", "dep-pkg"):
        proxy.page(NormalizedName(name), "json")
    pages_before, root_before = _page_hits(upstream), upstream.hits["/simple/"]
    result = _run(conf, "--max-age", "0")
    assert result.returncode == 0, result.stderr
    if upstream.fmt == "html":
        # A PEP 503 root page has no serials: every page is revalidated.
        assert _page_hits(upstream) == pages_before + 2
        return
    assert upstream.hits["/simple/"] == root_before + 1
    assert _page_hits(upstream) == pages_before  # nothing changed: no project request
    assert "unchanged 2" in result.stdout
    upstream.add_file("dep-pkg", "dep_pkg-9.0.tar.gz", b"new release")
    result = _run(conf, "--max-age", "0")
    assert result.returncode == 0, result.stderr
    assert [p for p, n in upstream.hits.items() if p.startswith("/simple/d")] == [
        "/simple/demo-pkg/",
        "/simple/dep-pkg/",
    ]
    assert upstream.hits["/simple/dep-pkg/"] == 2 and upstream.hits["/simple/demo-pkg/"] == 1
    page = (tmp_path / "cache" / "dep-pkg" / "index.json").read_text()
    assert "dep_pkg-9.0.tar.gz" in page


def test_a_project_request_never_waits_for_the_root_page(
    tmp_path: Path, upstream: Upstream
) -> None:
    import threading

    conf = tmp_path / "eggproxy.conf"
    conf.write_text(f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = {upstream.url}\n")
    proxy = Proxy(load_config(conf))
    proxy.prepare()
    upstream.delay_root = 5.0
    root = threading.Thread(target=proxy.page, args=(None, "json"))
    root.start()
    try:
        result = proxy.page(NormalizedName("demo-pkg"), "json")
        assert result.outcome == "miss"
        assert root.is_alive()  # the root page is still on its way
    finally:
        upstream.delay_root = 0.0
        root.join(30)
