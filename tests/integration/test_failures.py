"""Issue 16 on both front ends: failures shared, not multiplied, and answered truthfully.

Counts are taken at the upstream double; nothing here times anything.
"""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import FrontEnd, private_upstream, skip_behind_nginx
from test_freshness import age_page
from tests.integration.apache import ApacheProxy
from tests.integration.standalone import StandaloneServer, start_serve, wait_until
from tests.integration.upstream import Upstream

from eggproxy.download import WHOLE_WAIT

pytestmark = pytest.mark.integration
# The upstream's format does not matter here: JSON only, to halve the run.
JSON_ONLY = pytest.mark.parametrize("upstream", ["json"], indirect=True)

PAGE = "/simple/demo-pkg/"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
UNLISTED = "demo_pkg-99.0-py3-none-any.whl"
CLIENTS = 16


def get(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=60)


def concurrently(url: str, count: int = CLIENTS) -> list[requests.Response]:
    barrier = threading.Barrier(count)

    def one(_: int) -> requests.Response:
        barrier.wait(30)
        return get(url)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def warm_up(proxy: FrontEnd) -> None:
    """Have the front end's processes ready, so that a herd reaches eggproxy together.

    (Apache starts more children only under load, a second apart, and each imports
    eggproxy on its first request: a request still queued in Apache's backlog when
    the attempt fails has not waited for it, and rightly makes a new one.)
    """
    for _ in range(3):
        assert {r.status_code for r in concurrently(proxy.url + "demo-pkg/")} == {200}


def one_line(response: requests.Response) -> bool:
    text = response.text.strip()
    return bool(text) and "\n" not in text and "Traceback" not in text


# --- 1. a file a stale page does not list -------------------------------------------


@JSON_ONLY
@pytest.mark.proxy_options(index_ttl=60, timeout=20)
def test_unlisted_file_waits_for_the_revalidation_in_flight(
    proxy: FrontEnd, upstream: Upstream
) -> None:
    skip_behind_nginx(proxy, "the test ages the page on disk")
    assert get(proxy.url + "demo-pkg/").status_code == 200
    age_page(proxy.cache_dir, "demo-pkg", 120)
    upstream.delay_pages = 3.0
    # The stale page is answered at once; its revalidation holds the lock for seconds.
    assert get(proxy.url + "demo-pkg/").headers["Warning"].startswith("110 ")

    response = get(proxy.url + f"demo-pkg/{UNLISTED}")
    assert response.status_code == 404, response.text  # not 502 "being revalidated"
    assert upstream.hits[PAGE] == 2  # it used the revalidation's result


@JSON_ONLY
@pytest.mark.proxy_options(index_ttl=60, timeout=20)
def test_unlisted_file_when_the_upstream_fails(proxy: FrontEnd, upstream: Upstream) -> None:
    assert get(proxy.url + "demo-pkg/").status_code == 200
    age_page(proxy.cache_dir, "demo-pkg", 120)
    upstream.down = True
    response = get(proxy.url + f"demo-pkg/{UNLISTED}")
    assert response.status_code == 502 and one_line(response)
    assert "503" in response.text  # the reason: what the upstream answered
    upstream.down = False
    assert get(proxy.url + f"demo-pkg/{UNLISTED}").status_code == 404


# --- 2. failures shared -------------------------------------------------------------


@JSON_ONLY
@pytest.mark.proxy_options(workers=2, apache_servers=CLIENTS + 4)
def test_waiters_share_one_failed_download(proxy: FrontEnd, upstream: Upstream) -> None:
    assert get(proxy.url + "demo-pkg/").status_code == 200
    warm_up(proxy)
    upstream.truncate.add(WHEEL)
    upstream.slow[WHEEL] = 6.0  # every client is waiting before the download fails

    responses = concurrently(proxy.url + f"demo-pkg/{WHEEL}")
    assert {r.status_code for r in responses} == {502}, [r.text for r in responses]
    assert all(one_line(r) for r in responses)
    # One download for the clients that waited on it.  Under load, a request Apache had
    # not yet handed to a child when the attempt failed has waited for nothing and rightly
    # makes an attempt of its own (see warm_up): there, a few attempts, never one each.
    attempts = upstream.hits[upstream.file_path(WHEEL)]
    on_apache = isinstance(getattr(proxy, "server", None), ApacheProxy)
    assert attempts == 1 or (on_apache and attempts <= CLIENTS // 4), attempts

    # A request that arrives after the failure makes a new attempt.
    upstream.truncate.discard(WHEEL)
    upstream.slow.pop(WHEEL)
    response = get(proxy.url + f"demo-pkg/{WHEEL}")
    assert response.status_code == 200
    assert response.content == upstream.file(WHEEL).path.read_bytes()
    assert upstream.hits[upstream.file_path(WHEEL)] == attempts + 1


@JSON_ONLY
@pytest.mark.proxy_options(workers=2, timeout=20, apache_servers=CLIENTS + 4)
def test_waiters_share_one_failed_page_fetch(proxy: FrontEnd, upstream: Upstream) -> None:
    skip_behind_nginx(proxy, "the test ages the page on disk")
    warm_up(proxy)
    upstream.delay_pages = 6.0  # every client is waiting before the fetch fails
    upstream.malformed.add("dep-pkg")
    responses = concurrently(proxy.url + "dep-pkg/")
    assert {r.status_code for r in responses} == {502}
    assert all(one_line(r) for r in responses)
    assert upstream.hits["/simple/dep-pkg/"] == 1


# --- 3. unknown names remembered ----------------------------------------------------


@JSON_ONLY
def test_unknown_names_are_remembered(proxy: FrontEnd, upstream: Upstream) -> None:
    for _ in range(10):
        assert get(proxy.url + "no-such-project/").status_code == 404
        assert get(proxy.url + "no-such-project/no_such_project-1.0.tar.gz").status_code == 404
    assert upstream.hits["/simple/no-such-project/"] == 1
    assert not (proxy.cache_dir / "no-such-project").exists()
    assert get(proxy.url + ".negative/no-such-project").status_code in (400, 403, 404)


@JSON_ONLY
@pytest.mark.proxy_options(extra_config="negative_ttl = 0\n")
def test_negative_ttl_zero_asks_every_time(proxy: FrontEnd, upstream: Upstream) -> None:
    for _ in range(3):
        assert get(proxy.url + "no-such-project/").status_code == 404
    assert upstream.hits["/simple/no-such-project/"] == 3


# --- 4. status and log tell the truth (eggproxy serve streams misses) -----------------


@JSON_ONLY
@pytest.mark.parametrize("proxy", ["serve"], indirect=True)
def test_failure_before_the_first_byte_is_502(proxy: StandaloneServer, upstream: Upstream) -> None:
    assert get(proxy.url + "demo-pkg/").status_code == 200
    upstream.truncate.add(WHEEL)
    response = get(proxy.url + f"demo-pkg/{WHEEL}")
    assert response.status_code == 502 and one_line(response)
    line = f'"GET /simple/demo-pkg/{WHEEL} HTTP/1.1" 502 '
    assert wait_until(lambda: line in proxy.log_text()), proxy.log_text()[-3000:]
    assert f'{WHEEL} HTTP/1.1" 200' not in proxy.log_text()


own_upstream = pytest.fixture(private_upstream, name="own_upstream")


def test_aborted_stream_is_logged_as_the_client_got_it(
    own_upstream: Upstream, tmp_path: Path
) -> None:
    upstream, name = own_upstream, "cut_pkg-1.0-py3-none-any.whl"
    upstream.add_file("cut-pkg", name, 4 << 20)
    upstream.truncate.add(name)
    # Per 64 KiB; the cut (after 32 of them) comes once the followers have stopped
    # waiting for the whole file, so the response has started.
    upstream.slow[name] = (WHOLE_WAIT + 1.5) / 32
    with start_serve(upstream.url, tmp_path / "cache") as server:
        assert get(server.url + "cut-pkg/").status_code == 200
        status, received = read_until_cut(server.port, f"/simple/cut-pkg/{name}")
        assert status == 200 and 0 < received < (4 << 20)
        line = f'"GET /simple/cut-pkg/{name} HTTP/1.1" 200 {received} '
        assert wait_until(lambda: line in server.log_text()), server.log_text()[-3000:]
        logged = next(ln for ln in server.log_text().splitlines() if line in ln)
        assert logged.endswith(" aborted")


def read_until_cut(port: int, path: str) -> tuple[int, int]:
    """GET ``path``; return the status and exactly how many body bytes arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    received = 0
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        try:
            while chunk := response.read1(1 << 16):
                received += len(chunk)
        except http.client.IncompleteRead as exc:
            received += len(exc.partial)
        except OSError:
            pass
        return response.status, received
    finally:
        conn.close()
