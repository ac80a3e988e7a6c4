"""Several sources behind one index: private first, local folders, PEP 708, credentials.

Two fake upstreams ("private", which requires a password, and "public") and a
local folder sit behind one eggproxy, on every front end.  The project
``shared-pkg`` is on both upstreams, the public one with a higher version: the
dependency-confusion set-up the first-source policy exists for.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import FRONT_ENDS, FrontEnd, ProxyOptions
from tests.integration.apache import public_dir as public_dir_for_apache
from tests.integration.clients import ClientTools, IndexClients
from tests.integration.fixtures import build_wheel
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

SECRET = "pa55-w0rd-never-shown"
JSON = "application/vnd.pypi.simple.v1+json"


def _mod(version: str) -> dict[str, bytes]:
    return {"shared_pkg/__init__.py": f"__version__ = {version!r}\n".encode()}


@dataclass
class Sources:
    private: Upstream
    public: Upstream
    folder: Path


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[Sources]:
    private_dir, public_dir = tmp_path / "private", tmp_path / "public"
    build_wheel(private_dir, "shared-pkg", "1.0", _mod("1.0"))
    build_wheel(public_dir, "shared-pkg", "2.0", _mod("2.0"))
    build_wheel(public_dir, "public-only", "1.0", {"public_only.py": b""})
    # Outside pytest's private tmp dirs: the Apache user must read the folder.
    folder = public_dir_for_apache("eggproxy-eggs-")
    try:
        local = build_wheel(tmp_path / "local", "folder-pkg", "1.0", {"folder_pkg.py": b""})
        shutil.copy(local, folder / local.name)
        with Upstream(private_dir) as private, Upstream(public_dir) as public:
            private.auth = ("reader", SECRET)
            yield Sources(private, public, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


Start = Callable[[str], FrontEnd]


@pytest.fixture(params=sorted(FRONT_ENDS))
def start(request: pytest.FixtureRequest, sources: Sources) -> Iterator[Start]:
    """Start eggproxy on front end ``request.param`` with extra source sections."""
    started: list[FrontEnd] = []

    def start(sections: str) -> FrontEnd:
        options = ProxyOptions(extra_config=sections, timeout=5.0)
        front_end = FRONT_ENDS[request.param](request, sources.public.url, options)
        started.append(front_end)
        return front_end

    yield start
    for front_end in started:
        front_end.stop()


def _sections(sources: Sources, *, public_extra: str = "", local_first: bool = False) -> str:
    private = f"[source:private]\nurl = {sources.private.url}\nusername = reader\n"
    private += f"password = {SECRET}\n"
    local = f"[source:local]\npath = {sources.folder}\n"
    public = f"[source:public]\nurl = {sources.public.url}\n{public_extra}"
    return "\n" + (local + private if local_first else private + local) + public


def _files(front_end: FrontEnd, project: str) -> tuple[str, list[str]]:
    response = requests.get(f"{front_end.url}{project}/", headers={"Accept": JSON}, timeout=30)
    response.raise_for_status()
    data = response.json()
    return data["meta"].get("_source"), [f["filename"] for f in data["files"]]


def _logs(front_end: FrontEnd) -> str:
    for name in ("error_log_text", "log_text"):
        method = getattr(front_end, name, None)
        if method is not None:
            return str(method())
    return ""


def test_private_wins_with_pip_and_uv(
    start: Start, sources: Sources, client_tools: ClientTools, tmp_path: Path
) -> None:
    front_end = start(_sections(sources))
    assert _files(front_end, "shared-pkg") == ("private", ["shared_pkg-1.0-py3-none-any.whl"])
    assert sources.public.hits["/simple/shared-pkg/"] == 0  # never even asked
    clients = IndexClients(client_tools, front_end.url, tmp_path / "clients")
    venv = clients.pip_venv()
    clients.pip_install(venv, "shared-pkg", "public-only", "folder-pkg")
    assert clients.installed(venv)["shared-pkg"] == "1.0"
    uv_venv = clients.bare_venv()
    clients.uv_pip_install(uv_venv, "shared-pkg")
    assert clients.installed(uv_venv)["shared-pkg"] == "1.0"


def test_allow_list_takes_a_project_from_a_later_source(start: Start, sources: Sources) -> None:
    front_end = start(_sections(sources, public_extra="allow = Shared_Pkg\n"))
    assert _files(front_end, "shared-pkg") == ("public", ["shared_pkg-2.0-py3-none-any.whl"])


def test_unsafe_merge_of_remotes_is_refused_without_pep_708(start: Start, sources: Sources) -> None:
    front_end = start(_sections(sources, public_extra="mode = unsafe-merge\n"))
    assert _files(front_end, "shared-pkg") == ("private", ["shared_pkg-1.0-py3-none-any.whl"])
    assert "refusing to merge shared-pkg from source public" in _logs(front_end)


def test_local_folder_merges_and_gets_new_files(
    start: Start, sources: Sources, tmp_path: Path
) -> None:
    shared = build_wheel(tmp_path / "b", "shared-pkg", "1.5", _mod("1.5"))
    shutil.copy(shared, sources.folder / shared.name)
    front_end = start(_sections(sources, public_extra="mode = unsafe-merge\n", local_first=True))
    source, files = _files(front_end, "shared-pkg")
    # Local folders may always merge with a remote source (PEP 708).
    assert source == "local+public"
    assert files == ["shared_pkg-1.5-py3-none-any.whl", "shared_pkg-2.0-py3-none-any.whl"]
    newer = build_wheel(tmp_path / "c", "shared-pkg", "1.6", _mod("1.6"))
    time.sleep(0.01)  # the folder's mtime must move past the page's fetch time
    shutil.copy(newer, sources.folder / newer.name)
    assert "shared_pkg-1.6-py3-none-any.whl" in _files(front_end, "shared-pkg")[1]
    wheel = requests.get(f"{front_end.url}shared-pkg/{newer.name}", timeout=30)
    assert wheel.status_code == 200 and wheel.content == newer.read_bytes()
    metadata = requests.get(f"{front_end.url}shared-pkg/{newer.name}.metadata", timeout=30)
    assert metadata.status_code == 200 and b"Name: shared-pkg" in metadata.content


def test_root_page_is_the_union(start: Start, sources: Sources) -> None:
    front_end = start(_sections(sources))
    response = requests.get(front_end.url, headers={"Accept": JSON}, timeout=30)
    names = {p["name"] for p in response.json()["projects"]}
    assert {"shared-pkg", "public-only", "folder-pkg"} <= names


def test_credentials_never_appear(start: Start, sources: Sources) -> None:
    front_end = start(_sections(sources))
    page = requests.get(f"{front_end.url}shared-pkg/", timeout=30)
    assert page.status_code == 200 and SECRET not in page.text
    assert sources.private.hits["/simple/shared-pkg/"] == 1
    sources.private.down = True
    failed = requests.get(f"{front_end.url}shared-pkg/shared_pkg-1.0-py3-none-any.whl", timeout=30)
    assert failed.status_code in (502, 504) and SECRET not in failed.text
    # A private source that is down never lets the public project through.
    other = requests.get(f"{front_end.url}public-only/", timeout=30)
    assert other.status_code in (502, 504)
    assert SECRET not in _logs(front_end)
    for path in front_end.cache_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
