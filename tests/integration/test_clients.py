"""The real clients (pip, uv, zc.buildout, easy_install) install through eggproxy.

Each test runs one client, isolated (see :mod:`clients`), against the ``proxy`` fixture (every
front end, both upstream formats), then checks what the client installed and that the proxy's
cache holds, byte for byte, the fixture files the client fetched.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import pytest
from tests.integration.clients import BuildoutRun, ClientTools, IndexClients, canonicalize
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

NEWEST = "demo_pkg-2.0-py3-none-any.whl"
YANKED = "demo_pkg-0.9-py3-none-any.whl"
DEP = "dep_pkg-1.0-py3-none-any.whl"
SDIST_NEWEST = "sdist_only-1.1.zip"
SDIST_OLDER = "sdist_only-1.0.tar.gz"
DOTTED = "dotted_name-1.0-py3-none-any.whl"
VERSION_OF = "import {0}; print({0}.__version__)"


class CachingProxy(Protocol):
    url: str
    cache_dir: Path


class Fixtures(Protocol):
    projects: dict[str, list[Path]]

    def path(self, filename: str) -> Path: ...


@pytest.fixture
def clients(client_tools: ClientTools, proxy: CachingProxy, tmp_path: Path) -> IndexClients:
    return IndexClients(client_tools, proxy.url, tmp_path)


def fixture_source(files: Fixtures, filename: str) -> Path:
    """The fixture file behind ``filename`` (a distribution or its PEP 658 ``.metadata``)."""
    if filename.endswith(".metadata"):
        return files.path(filename.removesuffix(".metadata")).with_name(filename)
    return files.path(filename)


def assert_cached(proxy: CachingProxy, files: Fixtures, *filenames: str) -> None:
    """Each file sits in the proxy's cache as ``<project>/<file>``, equal to the fixture."""
    for filename in filenames:
        source = fixture_source(files, filename)
        cached = proxy.cache_dir / source.parent.name / filename
        listing = sorted(p.name for p in cached.parent.iterdir()) if cached.parent.is_dir() else []
        assert cached.is_file(), f"{cached} missing; {cached.parent} holds {listing}"
        assert cached.read_bytes() == source.read_bytes(), f"{cached} differs from the fixture"


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}\n{result.stderr}"


# --- pip -----------------------------------------------------------------------------------


def test_pip_install_picks_newest(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures
) -> None:
    venv = clients.pip_venv()
    result = clients.pip_install(venv, "demo-pkg")
    installed = clients.installed(venv)
    assert (installed["demo-pkg"], installed["dep-pkg"]) == ("2.0", "1.0"), installed
    assert "yanked" not in output(result).lower()
    assert clients.python(venv, VERSION_OF.format("demo_pkg")) == "2.0"
    # pip resolves with the PEP 658 metadata before it downloads the wheels.
    assert_cached(proxy, fixture_files, NEWEST, DEP, f"{NEWEST}.metadata", f"{DEP}.metadata")
    assert not (proxy.cache_dir / "demo-pkg" / YANKED).exists()


def test_pip_install_pinned_yanked_release(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures
) -> None:
    """PEP 592: a yanked release still installs when pinned, with the reason shown."""
    venv = clients.pip_venv()
    result = clients.pip_install(venv, "demo-pkg==0.9")
    text = output(result)
    assert "yanked version" in text and "broken build" in text, text
    assert clients.installed(venv)["demo-pkg"] == "0.9"
    assert_cached(proxy, fixture_files, YANKED, DEP)


def test_pip_download_sdist(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures, tmp_path: Path
) -> None:
    """The newest sdist (a ``.zip``), then a pinned older one (a ``.tar.gz``)."""
    venv, dest = clients.pip_venv(), tmp_path / "downloads"
    clients.pip_download(venv, dest, "sdist-only")
    assert sorted(p.name for p in dest.iterdir()) == [SDIST_NEWEST]
    clients.pip_download(venv, dest, "sdist-only==1.0")
    assert sorted(p.name for p in dest.iterdir()) == [SDIST_OLDER, SDIST_NEWEST]
    for path in dest.iterdir():
        assert path.read_bytes() == fixture_files.path(path.name).read_bytes(), path.name
    assert_cached(proxy, fixture_files, SDIST_NEWEST, SDIST_OLDER)


def test_pip_honours_requires_python(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures, tmp_path: Path
) -> None:
    """demo-pkg 2.0 requires Python >= 3.8: for 3.7, pip takes 1.0 (``data-requires-python``)."""
    dest = tmp_path / "downloads"
    options = ("--only-binary", ":all:", "--python-version", "3.7", "--no-deps", "-d", str(dest))
    clients.pip(clients.pip_venv(), "download", *options, "demo-pkg")
    assert sorted(p.name for p in dest.iterdir()) == ["demo_pkg-1.0-py3-none-any.whl"]
    assert_cached(proxy, fixture_files, "demo_pkg-1.0-py3-none-any.whl")


def test_pip_install_builds_sdist(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures
) -> None:
    """With build isolation on: the fixture sdists' in-tree backend requires nothing."""
    venv = clients.pip_venv()
    clients.pip_install(venv, "sdist-only")
    assert clients.installed(venv)["sdist-only"] == "1.1"
    assert clients.python(venv, VERSION_OF.format("sdist_only")) == "1.1"
    assert_cached(proxy, fixture_files, SDIST_NEWEST)


def test_pip_install_dotted_name(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures
) -> None:
    venv = clients.pip_venv()
    clients.pip_install(venv, "Dotted.Name")
    assert clients.installed(venv)["dotted-name"] == "1.0"
    assert clients.python(venv, VERSION_OF.format("dotted_name")) == "1.0"
    assert_cached(proxy, fixture_files, DOTTED)


# --- uv ------------------------------------------------------------------------------------


def test_uv_pip_install(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures
) -> None:
    venv = clients.bare_venv()
    clients.uv_pip_install(venv, "demo-pkg")
    assert clients.installed(venv) == {"demo-pkg": "2.0", "dep-pkg": "1.0"}
    assert clients.python(venv, VERSION_OF.format("demo_pkg")) == "2.0"
    assert_cached(proxy, fixture_files, NEWEST, DEP)


# --- zc.buildout ---------------------------------------------------------------------------


def egg_versions(run: BuildoutRun) -> dict[str, str]:
    """Canonical project name -> version of the eggs buildout installed."""
    return {canonicalize(n.split("-")[0]): n.split("-")[1] for n in run.eggs()}


def test_buildout_eggs(clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures) -> None:
    """zc.buildout reads the PEP 503 HTML pages with its own package index."""
    run = clients.buildout(["demo-pkg", "sdist-only", "Dotted.Name"])
    expected = {"demo-pkg": "2.0", "dep-pkg": "1.0", "sdist-only": "1.1", "dotted-name": "1.0"}
    assert egg_versions(run) == expected, output(run.process)
    fetched = sorted(run.download_dir.rglob("*.*"))
    assert sorted(p.name for p in fetched) == sorted([NEWEST, DEP, SDIST_NEWEST, DOTTED])
    for path in fetched:
        assert path.read_bytes() == fixture_files.path(path.name).read_bytes(), path.name
    assert_cached(proxy, fixture_files, NEWEST, DEP, SDIST_NEWEST, DOTTED)


def test_later_clients_are_served_from_the_cache(
    clients: IndexClients, proxy: CachingProxy, upstream: Upstream, fixture_files: Fixtures
) -> None:
    """Once pip has fetched demo-pkg, uv (JSON pages) and buildout (HTML pages) are all hits."""
    clients.pip_install(clients.pip_venv(), "demo-pkg")
    seen = len(upstream.requests)
    venv = clients.bare_venv()
    clients.uv_pip_install(venv, "demo-pkg")
    assert clients.installed(venv) == {"demo-pkg": "2.0", "dep-pkg": "1.0"}
    assert egg_versions(clients.buildout(["demo-pkg"])) == {"demo-pkg": "2.0", "dep-pkg": "1.0"}
    assert upstream.requests[seen:] == []
    assert_cached(proxy, fixture_files, NEWEST, DEP)


# --- easy_install --------------------------------------------------------------------------


def test_easy_install_egg(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures, tmp_path: Path
) -> None:
    (egg,) = (p.name for p in fixture_files.projects["egg-only"])
    egg_python = re.search(r"-py(\d+\.\d+)\.egg$", egg)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if egg_python is None or egg_python.group(1) != here:
        pytest.skip(f"the fixture egg {egg} is not for Python {here}")
    target = tmp_path / "site"
    clients.easy_install(target, "egg-only")
    assert (target / egg).is_file()
    code = VERSION_OF.format("egg_only")
    assert clients.python(clients.tools.easy_install, code, path=[target]) == "1.0"
    assert_cached(proxy, fixture_files, egg)


def test_easy_install_sdist(
    clients: IndexClients, proxy: CachingProxy, fixture_files: Fixtures, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    clients.easy_install(target, "sdist-only")
    assert [p.name.split("-")[:2] for p in target.glob("*.egg")] == [["sdist_only", "1.1"]]
    code = VERSION_OF.format("sdist_only")
    assert clients.python(clients.tools.easy_install, code, path=[target]) == "1.1"
    assert_cached(proxy, fixture_files, SDIST_NEWEST)
