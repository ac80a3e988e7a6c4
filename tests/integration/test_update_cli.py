"""``eggproxy_update``, the cron entry point, run as a command against a real upstream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.upstream import Upstream

from eggproxy.config import load_config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "eggproxy_update"


def _run(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "-c", str(conf), *args], capture_output=True, text=True, timeout=120
    )


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
    assert result.stdout.strip() == "checked 3, changed 0, unchanged 3, failed 0"
    assert upstream.hits["/simple/demo-pkg/"] == before["/simple/demo-pkg/"] + 1
    # Conditional requests: every page was asked for with its ETag.
    conditional = [h for _m, path, h in upstream.requests if path == "/simple/demo-pkg/"]
    assert "If-None-Match" in conditional[-1]
    # Nothing is due within update_interval (24 hours by default).
    assert _run(filled).stdout.strip() == "checked 0, changed 0, unchanged 0, failed 0"


def test_update_reports_failures_and_gone_projects(filled: Path, upstream: Upstream) -> None:
    del upstream.projects["dep-pkg"]
    result = _run(filled, "--max-age", "0")
    assert result.returncode == 0, result.stderr
    assert "gone upstream: dep-pkg" in result.stdout
    upstream.down = True
    result = _run(filled, "--max-age", "0", "-q")
    assert result.returncode == 1
    assert result.stdout.strip().endswith("failed 3")


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
