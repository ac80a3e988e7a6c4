"""Varnish in front of ``eggproxy serve``, wired by ``eggproxy deploy varnish`` (issue 12)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tests.integration.apache import public_dir
from tests.integration.clients import ClientTools, IndexClients
from tests.integration.fixtures import build_projects
from tests.integration.standalone import (
    CLIENT_TIMEOUT,
    clean_env,
    fetch_concurrently,
    sha256,
    wait_until,
)
from tests.integration.upstream import Upstream
from tests.integration.varnish import VarnishProxy, require_varnish

from eggproxy.standalone.accesslog import FLUSH_INTERVAL

pytestmark = pytest.mark.integration

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON_V1}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("varnish-files")
    build_projects(root)
    return root


@pytest.fixture
def upstream(files: Path, tmp_path: Path) -> Iterator[Upstream]:
    private = tmp_path / "files"
    shutil.copytree(files, private)
    with Upstream(private) as up:
        yield up


@pytest.fixture
def tier(upstream: Upstream) -> Iterator[VarnishProxy]:
    require_varnish()
    with VarnishProxy(upstream.url, index_ttl=300) as proxy:
        yield proxy
        print(proxy.log_text()[-4000:], proxy.serve.log_text()[-8000:])


def get(url: str, accept: str | None = None) -> requests.Response:
    headers = {} if accept is None else {"Accept": accept}
    return requests.get(url, headers=headers, timeout=CLIENT_TIMEOUT)


def reached(tier: VarnishProxy, path: str) -> int:
    """How many requests for ``path`` reached eggproxy, once its log has caught up.

    A marker request sent to eggproxy directly is logged after every earlier one by
    the worker that answers it; another worker's lines of earlier requests are written
    by then too (at each response) and on disk within FLUSH_INTERVAL of that.
    """
    marker = f"/simple/zz-marker-{len(tier.serve.log_text())}/"
    sent = time.monotonic()
    requests.get(tier.serve.url + marker.removeprefix("/simple/"), timeout=CLIENT_TIMEOUT)
    assert wait_until(lambda: any(marker in r for r in tier.requests_reaching_eggproxy()))
    time.sleep(max(0.0, sent + 2 * FLUSH_INTERVAL - time.monotonic()))  # a wait, not a check
    return sum(1 for r in tier.requests_reaching_eggproxy() if r.split()[1] == path)


def test_repeated_hits_never_reach_eggproxy(tier: VarnishProxy) -> None:
    page, file = "/simple/demo-pkg/", f"/simple/demo-pkg/{WHEEL}"
    for _ in range(5):
        for accept in (PIP_ACCEPT, BROWSER_ACCEPT, None):
            assert get(tier.root + page, accept).status_code == 200
        response = get(tier.root + file)
        assert response.status_code == 200
    assert response.headers["x-cache"] == "HIT"
    # One fetch per page format (JSON; HTML for both the browser and no Accept), one file.
    assert reached(tier, page) == 2
    assert reached(tier, file) == 1


def test_html_and_json_do_not_mix(tier: VarnishProxy) -> None:
    url = tier.url + "demo-pkg/"
    for _ in range(2):
        json_page = get(url, PIP_ACCEPT)
        assert json_page.headers["content-type"] == JSON_V1
        assert json_page.json()["name"] == "demo-pkg"
        for accept in (BROWSER_ACCEPT, None, "text/html"):
            html = get(url, accept)
            assert html.headers["content-type"].startswith("text/html")
            assert html.text.lstrip().lower().startswith("<!doctype html")
    # An Accept a regex cannot decide goes to eggproxy, which negotiates it (HTML here).
    odd = f"application/vnd.pypi.simple.v1+html, {JSON_V1};q=0.5"
    assert get(url, odd).headers["content-type"].startswith("application/vnd.pypi.simple.v1+html")
    assert get(url, odd).headers["x-cache"] == "MISS"


def test_changed_page_is_new_after_the_ttl(upstream: Upstream) -> None:
    require_varnish()
    settings = {"stale_while_revalidate": "0"}
    with VarnishProxy(upstream.url, index_ttl=1, purge=False, settings=settings) as tier:
        url = tier.url + "dep-pkg/"
        assert len(get(url, PIP_ACCEPT).json()["files"]) == 1
        upstream.add_file("dep-pkg", "dep_pkg-1.1-py3-none-any.whl", b"new wheel")
        assert wait_until(lambda: len(get(url, PIP_ACCEPT).json()["files"]) == 2)


def test_an_update_purges_the_changed_page_at_once(tier: VarnishProxy, upstream: Upstream) -> None:
    url = tier.url + "dep-pkg/"
    for accept in (PIP_ACCEPT, None):
        get(url, accept)
    assert get(url, PIP_ACCEPT).headers["x-cache"] == "HIT"
    upstream.add_file("dep-pkg", "dep_pkg-1.1-py3-none-any.whl", b"new wheel")
    assert len(get(url, PIP_ACCEPT).json()["files"]) == 1  # cached for max-age=300
    serve = tier.serve
    cmd = [sys.executable, "-m", "eggproxy", "update", "-c", str(serve.config_path), "-q"]
    cmd += ["--cache-dir", str(serve.cache_dir), "--index", upstream.url, "--max-age", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    # Both formats were purged: served new at once.
    assert len(get(url, PIP_ACCEPT).json()["files"]) == 2
    assert "dep_pkg-1.1-py3-none-any.whl" in get(url).text


def test_sixteen_cold_requests_make_one_download(tier: VarnishProxy, upstream: Upstream) -> None:
    name = "demo_pkg-3.0-py3-none-any.whl"
    data = upstream.add_file("demo-pkg", name, 4 << 20)
    upstream.slow[name] = 0.002
    get(tier.url + "demo-pkg/", PIP_ACCEPT)
    results = fetch_concurrently(f"{tier.url}demo-pkg/{name}", 16)
    assert all(r.complete for r in results), results
    expected = sha256((tier.cache_dir / "demo-pkg" / name).read_bytes())
    assert {r.digest for r in results} == {expected}
    assert data.size == results[0].received
    assert upstream.hits[upstream.file_path(name)] == 1
    # Varnish coalesced them: eggproxy itself was asked once.
    assert reached(tier, f"/simple/demo-pkg/{name}") == 1


def test_errors_are_not_kept(tier: VarnishProxy, upstream: Upstream) -> None:
    get(tier.url + "demo-pkg/", PIP_ACCEPT)
    upstream.down = True
    url = f"{tier.url}demo-pkg/demo_pkg-2.0-py3-none-any.whl"
    assert get(url).status_code in (502, 503, 504)
    upstream.down = False
    assert get(url).status_code == 200


def test_purge_and_ban_from_purge_from(tier: VarnishProxy) -> None:
    url = tier.url + "demo-pkg/"
    get(url, PIP_ACCEPT)
    assert get(url, PIP_ACCEPT).headers["x-cache"] == "HIT"
    purged = requests.request("PURGE", url, timeout=CLIENT_TIMEOUT)
    assert purged.status_code == 200  # from 127.0.0.1, the default purge_from
    assert get(url, PIP_ACCEPT).headers["x-cache"] == "MISS"
    banned = requests.request("BAN", tier.url + "demo", timeout=CLIENT_TIMEOUT)
    assert banned.status_code == 200
    assert get(url, PIP_ACCEPT).headers["x-cache"] == "MISS"


def test_purge_from_another_address_is_refused(upstream: Upstream) -> None:
    require_varnish()
    settings = {"purge_from": "10.9.9.9"}
    with VarnishProxy(upstream.url, purge=False, settings=settings) as tier:
        for method in ("PURGE", "BAN"):
            refused = requests.request(method, tier.url + "demo-pkg/", timeout=CLIENT_TIMEOUT)
            assert refused.status_code == 403


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_pip_and_uv_install_through_varnish(
    tier: VarnishProxy, client_tools: ClientTools, tmp_path: Path, client: str
) -> None:
    clients = IndexClients(client_tools, tier.url, tmp_path / "work")
    if client == "pip":
        venv = clients.pip_venv()
        clients.pip_install(venv, "demo-pkg")
    else:
        venv = clients.bare_venv()
        clients.uv_pip_install(venv, "demo-pkg")
    installed = clients.installed(venv)
    assert (installed["demo-pkg"], installed["dep-pkg"]) == ("2.0", "1.0"), installed


@pytest.mark.parametrize(
    "extra",
    [
        "prefix = /pypi/\npurge_from = 10.0.0.0/8, ::1\n",
        "purge_from =\nstale_while_revalidate = 0\n",
    ],
)
def test_varnishd_compiles_the_vcl_of_other_configurations(extra: str) -> None:
    require_varnish()
    tmp_path = public_dir("eggproxy-vcl-")  # varnishd's compiler runs as its own user
    config = tmp_path / "eggproxy.conf"
    config.write_text(
        f"[eggproxy]\ncache_dir = {tmp_path}/cache\nindex = http://127.0.0.1:9/simple/\n" + extra
    )
    cmd = [sys.executable, "-m", "eggproxy", "deploy", "varnish", "-c", str(config)]
    vcl = tmp_path / "eggproxy.vcl"
    vcl.write_text(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    compiled = subprocess.run(
        ["varnishd", "-C", "-f", str(vcl), "-n", str(tmp_path / "n")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
