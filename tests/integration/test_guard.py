"""The supply-chain guard through real front ends and real clients (issue 11).

A release cooldown (``min_release_age``), an OSV blocklist folder and PEP 740 provenance, on
every front end.  Upload times come from the upstream double: every fixture file is made
"old" except the newest demo-pkg wheel, uploaded "now".
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import FRONT_ENDS, FrontEnd, ProxyOptions, page_cache_in_front
from tests.integration.apache import public_dir
from tests.integration.clients import ClientError, ClientTools, IndexClients
from tests.integration.upstream import Upstream

from eggproxy.blocklist import CHECK_INTERVAL

pytestmark = pytest.mark.integration

NEWEST = "demo_pkg-2.0-py3-none-any.whl"
OLDER = "demo_pkg-1.0-py3-none-any.whl"
LONG_AGO = "2020-01-01T00:00:00.000000Z"
COOLDOWN = "min_release_age = 7d\n"
EXEMPT = COOLDOWN + "min_release_age_exempt = demo-pkg\n"
TIMEOUT = 60.0
JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
Start = Callable[[str], FrontEnd]


@pytest.fixture(params=sorted(FRONT_ENDS))
def start(request: pytest.FixtureRequest, upstream: Upstream) -> Iterator[Start]:
    """Start eggproxy behind the front end ``request.param`` with more configuration."""
    started: list[FrontEnd] = []

    def starter(extra_config: str) -> FrontEnd:
        options = ProxyOptions(extra_config=extra_config)
        front_end = FRONT_ENDS[request.param](request, upstream.url, options)
        started.append(front_end)
        return front_end

    yield starter
    for front_end in started:
        front_end.stop()


@pytest.fixture
def dated(upstream: Upstream) -> Upstream:
    """Every file uploaded long ago, but the newest demo-pkg wheel: uploaded now."""
    for files in upstream.projects.values():
        for dist in files.values():
            dist.upload_time = LONG_AGO
    now = datetime.datetime.now(datetime.UTC)
    upstream.file(NEWEST).upload_time = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return upstream


@pytest.fixture
def osv_dir() -> Iterator[Path]:
    """A blocklist folder every front end can read (Apache runs as www-data)."""
    path = public_dir("eggproxy-osv-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _clients(tools: ClientTools, front_end: FrontEnd, tmp_path: Path, name: str) -> IndexClients:
    return IndexClients(tools, front_end.url, tmp_path / name)


def _marked(front_end: FrontEnd, mark: str) -> bool:
    """The access log marks an answer ``mark`` (serve: `` held``; Apache: ``eggproxy=held``)."""
    for needle in (f" {mark}", f"={mark}"):
        if needle in _access_log(front_end, needle, tries=5):
            return True
    return needle in _access_log(front_end, needle)


def _access_log(front_end: FrontEnd, needle: str, tries: int = 50) -> str:
    """The access log once it holds ``needle`` (the standalone server writes it in batches)."""
    text = ""
    for _ in range(tries):
        if hasattr(front_end, "access_log_lines"):
            text = "\n".join(front_end.access_log_lines())
            if hasattr(front_end, "error_log_text"):  # nginx: eggproxy serve's own log behind it
                text += "\n" + front_end.error_log_text()
        else:
            text = front_end.log_text()  # type: ignore[attr-defined]
        if needle in text:
            break
        time.sleep(0.1)
    return text


# --- cooldown ----------------------------------------------------------------------


@pytest.mark.parametrize("upstream", ["json"], indirect=True)
def test_pip_and_uv_pick_the_older_release_under_a_cooldown(
    start: Start, dated: Upstream, client_tools: ClientTools, tmp_path: Path
) -> None:
    front_end = start(COOLDOWN)
    clients = _clients(client_tools, front_end, tmp_path, "clients")
    venv = clients.pip_venv()
    clients.pip_install(venv, "demo-pkg")
    assert clients.installed(venv)["demo-pkg"] == "1.0"
    uv_venv = clients.bare_venv()
    clients.uv_pip_install(uv_venv, "demo-pkg")
    assert clients.installed(uv_venv)["demo-pkg"] == "1.0"
    page = requests.get(front_end.url + "demo-pkg/", headers=JSON_ACCEPT, timeout=TIMEOUT).json()
    assert NEWEST not in [f["filename"] for f in page["files"]]
    assert page["versions"] == ["0.9", "1.0"]  # PEP 700: what is listed
    assert page["meta"]["_withheld"] == {"min_release_age": 1}
    assert "_next-release" in page["meta"]
    html = requests.get(front_end.url + "demo-pkg/", timeout=TIMEOUT).text
    assert "<!-- withheld by policy: min_release_age 1; next release" in html
    assert NEWEST not in html


@pytest.mark.parametrize("upstream", ["json"], indirect=True)
def test_an_exempt_project_gets_its_newest_release(
    start: Start, dated: Upstream, client_tools: ClientTools, tmp_path: Path
) -> None:
    clients = _clients(client_tools, start(EXEMPT), tmp_path, "clients")
    venv = clients.pip_venv()
    clients.pip_install(venv, "demo-pkg")
    assert clients.installed(venv)["demo-pkg"] == "2.0"
    uv_venv = clients.bare_venv()
    clients.uv_pip_install(uv_venv, "demo-pkg")
    assert clients.installed(uv_venv)["demo-pkg"] == "2.0"


@pytest.mark.parametrize("upstream", ["json"], indirect=True)
def test_poetry_locks_the_older_release_under_a_cooldown_and_the_newest_if_exempt(
    start: Start, dated: Upstream, client_tools: ClientTools, tmp_path: Path
) -> None:
    held = _clients(client_tools, start(COOLDOWN), tmp_path, "held")
    _run, locked = held.poetry_lock(["demo-pkg"])
    assert locked["demo-pkg"] == "1.0", locked
    exempt = _clients(client_tools, start(EXEMPT), tmp_path, "exempt")
    _run, locked = exempt.poetry_lock(["demo-pkg"])
    assert locked["demo-pkg"] == "2.0", locked


@pytest.mark.parametrize("upstream", ["json"], indirect=True)
def test_a_pinned_too_new_version_fails_with_the_hold_message(
    start: Start, dated: Upstream, client_tools: ClientTools, tmp_path: Path
) -> None:
    front_end = start(COOLDOWN)
    clients = _clients(client_tools, front_end, tmp_path, "clients")
    with pytest.raises(ClientError, match=r"demo-pkg==2\.0"):
        clients.pip_install(clients.pip_venv(), "demo-pkg==2.0")
    answer = requests.get(front_end.url + "demo-pkg/" + NEWEST, timeout=TIMEOUT)
    assert answer.status_code == 404
    assert "is not offered: held back until" in answer.text
    assert "(min_release_age)" in answer.text
    assert _marked(front_end, "held")
    assert not (front_end.cache_dir / "demo-pkg" / NEWEST).exists()


@pytest.mark.parametrize("upstream", ["html"], indirect=True)
def test_an_html_only_upstreams_new_file_is_held_from_first_sight(
    start: Start, upstream: Upstream
) -> None:
    """HTML pages carry no upload time: eggproxy counts from when it first saw the file."""
    front_end = start(COOLDOWN)
    page = requests.get(front_end.url + "demo-pkg/", headers=JSON_ACCEPT, timeout=TIMEOUT).json()
    assert page["files"] == []
    assert page["meta"]["_withheld"] == {"min_release_age": 4}
    answer = requests.get(front_end.url + "demo-pkg/" + NEWEST, timeout=TIMEOUT)
    assert answer.status_code == 404 and "held back until" in answer.text


# --- blocklist ---------------------------------------------------------------------


def _config_path(front_end: FrontEnd) -> Path:
    server = getattr(front_end, "server", front_end)  # Apache's wrapper, or eggproxy serve
    path: Path = server.config_path
    return path


def _audit(front_end: FrontEnd, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "eggproxy", "audit", "-c", str(_config_path(front_end))]
    cmd += ["--cache-dir", str(front_end.cache_dir), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)


def test_an_osv_record_blocks_a_cached_file_on_the_next_request(
    start: Start, upstream: Upstream, osv_dir: Path
) -> None:
    front_end = start(f"blocklist = {osv_dir}\n")
    url = front_end.url + "demo-pkg/" + OLDER
    assert requests.get(url, timeout=TIMEOUT).status_code == 200
    cached = front_end.cache_dir / "demo-pkg" / OLDER
    assert cached.exists()
    record = {
        "id": "MAL-2026-1234",
        "summary": "Malicious code in demo-pkg (PyPI)",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo-pkg"}, "versions": ["1.0"]}],
    }
    target = osv_dir / "MAL-2026-1234.json"
    target.write_text(json.dumps(record))
    target.chmod(0o644)
    time.sleep(CHECK_INTERVAL + 0.5)  # the folder is looked at every CHECK_INTERVAL at most
    if page_cache_in_front(front_end) is not None:
        # Apache and nginx send cached files themselves: eggproxy's watcher (a background
        # task or thread, every few seconds) is what takes the file away.  Bounded wait.
        for _ in range(100):
            if not cached.exists():
                break
            time.sleep(0.2)
    blocked = requests.get(url, timeout=TIMEOUT)
    assert blocked.status_code == 403
    assert "MAL-2026-1234" in blocked.text
    assert not cached.exists()  # out of the URL space: a static server cannot serve it
    listed = requests.get(front_end.url + "demo-pkg/", timeout=TIMEOUT).text
    assert OLDER not in listed and NEWEST in listed
    assert _marked(front_end, "blocked")
    audit = _audit(front_end)
    assert audit.returncode == 1, audit.stderr
    assert f"demo-pkg {OLDER} MAL-2026-1234" in audit.stdout
    purge = _audit(front_end, "--purge")
    assert purge.returncode == 0, purge.stderr
    assert not (front_end.cache_dir / "demo-pkg" / ".withheld" / OLDER).exists()
    assert requests.get(url, timeout=TIMEOUT).status_code == 403


# --- provenance --------------------------------------------------------------------


def test_provenance_is_served_and_cached(start: Start, upstream: Upstream) -> None:
    body = json.dumps({"version": 1, "attestation_bundles": []}).encode()
    path = upstream.add_provenance(NEWEST, body)
    front_end = start("")
    page = front_end.url + "demo-pkg/"
    html = requests.get(page, timeout=TIMEOUT).text
    assert f'data-provenance="{NEWEST}.provenance"' in html
    listing = requests.get(page, headers=JSON_ACCEPT, timeout=TIMEOUT)
    if upstream.fmt == "json":
        files = {f["filename"]: f for f in listing.json()["files"]}
        assert files[NEWEST]["provenance"] == NEWEST + ".provenance"
        assert "provenance" not in files[OLDER]
    for _ in range(2):
        answer = requests.get(page + NEWEST + ".provenance", timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.content == body
    assert upstream.hits[path] == 1  # cached like a metadata file
    assert (front_end.cache_dir / "demo-pkg" / (NEWEST + ".provenance")).read_bytes() == body
