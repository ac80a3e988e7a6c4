"""Fixtures of the integration tests: fixture distributions, a fake upstream, real front ends.

* ``fixture_files`` (session): the distributions of ``fixtures.build_projects``.
* ``upstream``: a fresh fake index per test, parametrised ``["json", "html"]``.
* ``proxy``: eggproxy behind a real front end, parametrised by front end (``FRONT_ENDS``), one
  per test, with a fresh cache, pointing at ``upstream``.  Options come from the marker
  ``@pytest.mark.proxy_options(index_ttl=1, timeout=5.0)``.  Pin a module to some front ends
  with ``pytest.mark.parametrize("proxy", ["apache"], indirect=True)``.

A front end is added by writing a starter ``(request, upstream_url, options) -> FrontEnd`` and
registering it in ``FRONT_ENDS`` (``apache``, ``nginx`` in front of ``eggproxy serve``, and
``serve`` alone).  Set ``EGGPROXY_KEEP_TEST_DIRS=1`` to keep each Apache's or nginx's directory
(config, cache, logs under ``/tmp/eggproxy-apache-*``, ``/tmp/eggproxy-nginx-*``) after its test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from tests.integration import apache, nginx, standalone
from tests.integration.clients import ClientTools
from tests.integration.fixtures import build_projects
from tests.integration.upstream import Upstream
from tests.support import is_proxy_variable

# Taken at import, before ``clean_environment`` runs: installing the mod_python site needs
# this machine's normal pip configuration.
ORIGINAL_ENVIRON = dict(os.environ)


@dataclass(frozen=True)
class FixtureFiles:
    """The built fixture distributions: ``root/<canonical name>/<file>``."""

    root: Path
    projects: dict[str, list[Path]]  # canonical name -> distribution files

    def path(self, filename: str) -> Path:
        for files in self.projects.values():
            for path in files:
                if path.name == filename:
                    return path
        raise KeyError(filename)


@dataclass(frozen=True)
class ProxyOptions:
    """Settings of the eggproxy behind a front end."""

    index_ttl: int = 300
    timeout: float = 10.0
    extra_config: str = ""  # appended to eggproxy's configuration file (e.g. sources)
    workers: int | None = None  # processes of ``eggproxy serve``
    apache_servers: int = 4  # Apache children started (and kept spare) up front


class FrontEnd(Protocol):
    """What a starter returns: a running front end with its own cache directory."""

    url: str  # the index URL, ending in "/simple/"
    cache_dir: Path

    def stop(self) -> None: ...


Starter = Callable[[pytest.FixtureRequest, str, ProxyOptions], FrontEnd]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "proxy_options(**kwargs): ProxyOptions of the proxy fixture (index_ttl, ...)"
    )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no proxy settings and no ``PIP_*`` variables of this machine."""
    for name in list(os.environ):
        if name.startswith("PIP_") or is_proxy_variable(name):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def fixture_files(tmp_path_factory: pytest.TempPathFactory) -> FixtureFiles:
    root = tmp_path_factory.mktemp("fixture-files")
    projects = build_projects(root)
    return FixtureFiles(root, {name: list(paths) for name, paths in projects.items()})


@pytest.fixture(params=["json", "html"])
def upstream(request: pytest.FixtureRequest, fixture_files: FixtureFiles) -> Iterator[Upstream]:
    """A fake index serving PEP 691 JSON (when asked) or only PEP 503 HTML."""
    with Upstream(fixture_files.root, fmt=request.param) as up:
        try:
            yield up
        finally:  # the fixture folder is shared: files a test added would be listed later
            up.remove_added()


def private_upstream(fixture_files: FixtureFiles, tmp_path: Path) -> Iterator[Upstream]:
    """A JSON index on a private copy of the fixtures (``add_file`` stays in the test).

    A plain generator: a module takes it as a fixture of the name it likes with
    ``upstream = pytest.fixture(private_upstream, name="upstream")``.
    """
    files = tmp_path / "upstream-files"
    shutil.copytree(fixture_files.root, files)
    with Upstream(files) as up:
        yield up


@pytest.fixture(scope="session")
def client_tools(tmp_path_factory: pytest.TempPathFactory) -> ClientTools:
    """The clients' own environments (pip, buildout, easy_install), built on first use."""
    return ClientTools(tmp_path_factory.mktemp("client-tools"))


# --- front ends ------------------------------------------------------------------


@pytest.fixture(scope="session")
def apache_site() -> Iterator[Path]:
    """eggproxy and its dependencies installed once for mod_python's interpreter."""
    apache.require_apache()
    site = apache.install_site(ORIGINAL_ENVIRON)
    yield site
    shutil.rmtree(site, ignore_errors=True)


class _ApacheFrontEnd:
    """An Apache or nginx front end whose ``stop`` also removes its directory."""

    def __init__(self, server: apache.ApacheProxy | nginx.NginxProxy) -> None:
        self.server = server
        self.url = server.url
        self.cache_dir = server.cache_dir

    def stop(self) -> None:
        if os.environ.get("EGGPROXY_KEEP_TEST_DIRS"):
            self.server.stop()
        else:
            self.server.cleanup()

    def error_log_text(self) -> str:
        return self.server.error_log_text()

    def access_log_lines(self) -> list[str]:
        return self.server.access_log_lines()

    def log_text(self, name: str) -> str:
        return self.server.log_text(name)


def start_apache(
    request: pytest.FixtureRequest, upstream_url: str, options: ProxyOptions
) -> FrontEnd:
    apache.require_apache()
    site: Path = request.getfixturevalue("apache_site")
    server = apache.ApacheProxy(
        site,
        upstream_url,
        index_ttl=options.index_ttl,
        timeout=options.timeout,
        extra_config=options.extra_config,
        start_servers=options.apache_servers,
    )
    return _ApacheFrontEnd(server)


def start_nginx(
    request: pytest.FixtureRequest, upstream_url: str, options: ProxyOptions
) -> FrontEnd:
    """``eggproxy serve`` behind Debian's nginx, wired by ``eggproxy deploy nginx``."""
    nginx.require_nginx()
    server = nginx.NginxProxy(
        upstream_url,
        index_ttl=options.index_ttl,
        timeout=options.timeout,
        extra_config=options.extra_config,
    )
    return _ApacheFrontEnd(server)


def page_cache_in_front(front_end: FrontEnd) -> str | None:
    """The web server keeping its own copy of pages in front of eggproxy, if any."""
    server = getattr(front_end, "server", None)
    if isinstance(server, nginx.NginxProxy):
        return "nginx"  # proxy_cache
    if isinstance(server, apache.ApacheProxy):
        return "apache"  # mod_cache (issue 14)
    return None


def skip_behind_nginx(front_end: FrontEnd, why: str) -> None:
    """Skip a test of eggproxy's own page freshness where a page cache answers in front."""
    kind = page_cache_in_front(front_end)
    if kind is not None:
        pytest.skip(f"{kind} serves its own copy of a page for its max-age: {why}")


FRONT_ENDS: dict[str, Starter] = {
    "apache": start_apache,
    "nginx": start_nginx,
    "serve": standalone.serve_front_end,
}


@pytest.fixture(params=sorted(FRONT_ENDS))
def proxy(request: pytest.FixtureRequest, upstream: Upstream) -> Iterator[FrontEnd]:
    """eggproxy behind the front end ``request.param``, with a fresh cache."""
    marker = request.node.get_closest_marker("proxy_options")
    options = ProxyOptions(**(marker.kwargs if marker else {}))
    front_end = FRONT_ENDS[request.param](request, upstream.url, options)
    try:
        yield front_end
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and hasattr(front_end, "error_log_text"):
            print(f"--- {request.param} error log ---\n{front_end.error_log_text()}")
        front_end.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell that the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
