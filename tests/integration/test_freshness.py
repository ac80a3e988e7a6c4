"""Issue 15 on both front ends: a cached page never makes a client wait on a slow link.

The upstream double answers pages after several seconds (``delay_pages``); assertions are
on headers and on the upstream's request counts, never on how long anything took.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import FrontEnd, skip_behind_nginx
from tests.integration.standalone import wait_until
from tests.integration.upstream import Upstream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("upstream", ["json"], indirect=True),
]

PAGE = "/simple/demo-pkg/"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
CLIENTS = 16


def get(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=60)


def age_page(cache_dir: Path, project: str, seconds: float) -> None:
    """Make a cached page look fetched ``seconds`` ago (both formats)."""
    when = time.time() - seconds
    for name in ("index.html", "index.json"):
        os.utime(cache_dir / project / name, (when, when))


def page_age(cache_dir: Path, project: str) -> float:
    return time.time() - (cache_dir / project / "index.json").stat().st_mtime


def concurrently(url: str, count: int = CLIENTS) -> list[requests.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: get(url), range(count)))


@pytest.mark.proxy_options(index_ttl=60, timeout=30, workers=2, apache_servers=CLIENTS + 4)
def test_stale_page_answered_at_once_and_revalidated_once(
    proxy: FrontEnd, upstream: Upstream
) -> None:
    skip_behind_nginx(proxy, "the test ages the page on disk")
    url = proxy.url + "demo-pkg/"
    first = get(url)
    assert first.status_code == 200 and upstream.hits[PAGE] == 1
    # Warm the front end's processes (Apache starts children, each imports eggproxy on
    # its first request), so that the stale answers below are not queued behind that.
    assert {r.status_code for r in concurrently(proxy.url + "dep-pkg/")} == {200}
    age_page(proxy.cache_dir, "demo-pkg", 120)
    upstream.delay_pages = 10.0  # a slow link: every page takes seconds

    stale = concurrently(url)
    # Every client got the cached page as it was, marked stale: none waited for the
    # upstream (which would have answered with a fresh page, without a Warning).
    for response in stale:
        assert response.status_code == 200
        assert response.content == first.content
        assert response.headers["Warning"].startswith("110 ")
        assert int(response.headers["Age"]) >= 120
        # (eggproxy serve adds its stale window, RFC 5861: issue 12.)
        assert response.headers["Cache-Control"].startswith("public, max-age=0")

    assert wait_until(lambda: page_age(proxy.cache_dir, "demo-pkg") < 60, limit=45)
    assert upstream.hits[PAGE] == 2  # one revalidation, however many clients and processes
    fresh = get(url)
    assert fresh.status_code == 200 and fresh.content == first.content
    assert "Warning" not in fresh.headers and "Age" not in fresh.headers
    assert not fresh.headers["Cache-Control"].startswith("public, max-age=0")
    assert upstream.hits[PAGE] == 2


@pytest.mark.proxy_options(index_ttl=60, timeout=20, extra_config="stale_while_revalidate = 0\n")
def test_window_zero_waits_for_the_upstream(proxy: FrontEnd, upstream: Upstream) -> None:
    skip_behind_nginx(proxy, "the test ages the page on disk")
    url = proxy.url + "demo-pkg/"
    assert get(url).status_code == 200
    age_page(proxy.cache_dir, "demo-pkg", 120)
    upstream.delay_pages = 2.0

    waited = get(url)
    # It waited for the revalidation: a fresh answer, not the stale copy.
    assert waited.status_code == 200
    assert "Warning" not in waited.headers and "Age" not in waited.headers
    assert upstream.hits[PAGE] == 2
    assert page_age(proxy.cache_dir, "demo-pkg") < 60


@pytest.mark.proxy_options(index_ttl=1, timeout=20, extra_config="stale_while_revalidate = 0\n")
def test_listed_file_never_waits_for_the_page(proxy: FrontEnd, upstream: Upstream) -> None:
    assert get(proxy.url + "demo-pkg/").status_code == 200
    age_page(proxy.cache_dir, "demo-pkg", 3600)  # stale, and past any window
    upstream.delay_pages = 30.0  # revalidating first would take longer than the timeout

    response = get(proxy.url + f"demo-pkg/{WHEEL}")
    assert response.status_code == 200
    assert response.content == upstream.file(WHEEL).path.read_bytes()
    assert upstream.hits[PAGE] == 1  # the page was not asked for again
