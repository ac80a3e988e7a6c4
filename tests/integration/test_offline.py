"""Sites that lose their link: ``eggproxy prefetch``, ``export`` and ``import``, end to end.

Each test fills a cache from a local upstream, stops that upstream (every upstream down),
then has real clients install from what was cached: through ``eggproxy serve`` on the
cache, and with pip straight from an exported tree (``file:///DIR/simple/``).
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.clients import ClientTools, IndexClients
from tests.integration.fixtures import _mod, build_sdist, build_wheel
from tests.integration.standalone import start_serve
from tests.integration.upstream import Upstream
from tests.support import clean_env

pytestmark = pytest.mark.integration

NATIVE = f"native-1.0-py3-none-manylinux_2_17_{platform.machine()}.whl"
FOREIGN = "native-1.0-py3-none-win_amd64.whl"


def eggproxy(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eggproxy", *args, "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
    )


def configuration(path: Path, upstream: Upstream, cache: Path) -> Path:
    path.write_text(f"[eggproxy]\ncache_dir = {cache}\nindex = {upstream.url}\n")
    return path


def build_graph(dest: Path) -> None:
    """app 2.0 needs lib>=2, app 1.0 lib>=1; a platform-specific wheel; an sdist dependency."""
    needs = ['winonly; sys_platform == "win32"', "native", "sdist-dep"]
    build_wheel(dest, "app", "1.0", {"app.py": _mod("1.0")}, ["lib>=1.0", *needs])
    build_wheel(dest, "app", "2.0", {"app.py": _mod("2.0")}, ["lib>=2.0", *needs])
    # No PEP 658 metadata file: prefetch reads the wheel's own METADATA.
    build_wheel(dest, "lib", "1.0", {"lib.py": _mod("1.0")}, metadata_file=False)
    build_wheel(dest, "lib", "2.0", {"lib.py": _mod("2.0")})
    build_wheel(dest, "winonly", "1.0", {"winonly.py": _mod("1.0")})
    for tag in (NATIVE, FOREIGN):
        build_wheel(
            dest, "native", "1.0", {"native.py": _mod("1.0")}, tag=tag.split("-", 2)[2][:-4]
        )
    build_sdist(dest, "sdist-dep", "1.0", {"sdist_dep.py": _mod("1.0")})


@pytest.fixture(params=["json", "html"])
def graph(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    root = tmp_path_factory.mktemp("graph")
    build_graph(root)
    up = Upstream(root, fmt=request.param)
    request.addfinalizer(up.stop)
    return up


def requirements(directory: Path) -> Path:
    (directory / "base.txt").write_text("# what the site runs\napp\n")
    main = directory / "requirements.txt"
    main.write_text("-r base.txt\n\nlib<2  # pinned by the site\n")
    return main


def test_prefetch_fills_the_cache_for_an_offline_install(
    graph: Upstream, tmp_path: Path, client_tools: ClientTools
) -> None:
    cache = tmp_path / "cache"
    conf = configuration(tmp_path / "eggproxy.conf", graph, cache)
    main = requirements(tmp_path)
    result = eggproxy(conf, "prefetch", "-r", str(main))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("prefetched 4 projects, ")
    fetched = sorted(line.split()[1] for line in lines[:-1])
    assert fetched == sorted(
        [
            "app/app-1.0-py3-none-any.whl",
            "app/app-1.0-py3-none-any.whl.metadata",
            "lib/lib-1.0-py3-none-any.whl",
            f"native/{NATIVE}",
            f"native/{NATIVE}.metadata",
            "sdist-dep/sdist_dep-1.0.tar.gz",
        ]
    )
    assert "sdist-dep 1.0: not resolved further" in result.stderr
    assert not (cache / "winonly").exists()
    assert not (cache / "native" / FOREIGN).exists()
    assert not (cache / "app" / "app-2.0-py3-none-any.whl").exists()
    # app 2.0 was tried (and its metadata kept, for the pips that will try it too).
    assert (cache / "app" / "app-2.0-py3-none-any.whl.metadata").is_file()

    graph.stop()
    with start_serve(graph.url, cache) as server:
        clients = IndexClients(client_tools, server.url, tmp_path / "pip")
        venv = clients.pip_venv()
        clients.pip(venv, "install", "-r", str(main))
        installed = clients.installed(venv)
    assert {name: installed[name] for name in ("app", "lib", "native", "sdist-dep")} == {
        "app": "1.0",
        "lib": "1.0",
        "native": "1.0",
        "sdist-dep": "1.0",
    }
    assert "winonly" not in installed


@pytest.mark.parametrize("graph", ["json"], indirect=True)
def test_prefetch_for_another_platform_and_every_platform(graph: Upstream, tmp_path: Path) -> None:
    conf = configuration(tmp_path / "eggproxy.conf", graph, tmp_path / "cache")
    main = requirements(tmp_path)
    windows = ["--python-version", "3.12", "--platform", "win_amd64"]
    result = eggproxy(conf, "prefetch", "-r", str(main), *windows)
    assert result.returncode == 0, result.stderr
    assert "winonly/winonly-1.0-py3-none-any.whl" in result.stdout
    assert f"native/{FOREIGN}" in result.stdout and NATIVE not in result.stdout
    result = eggproxy(conf, "prefetch", "-r", str(main), "--all-platforms")
    assert result.returncode == 0, result.stderr
    assert NATIVE in result.stdout and FOREIGN in result.stdout


@pytest.mark.parametrize("graph", ["json"], indirect=True)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app\nlib>=3\n", "eggproxy: cannot resolve: no version of lib matches lib>=3 ("),
        (
            "app>=2\nlib<2\n",
            "eggproxy: cannot resolve: conflicting requirements on lib: lib<2 (",
        ),
        ("--index-url http://127.0.0.1:9/simple/\n", "option --index-url is not supported"),
    ],
)
def test_prefetch_refuses_in_one_line(
    graph: Upstream, tmp_path: Path, text: str, message: str
) -> None:
    conf = configuration(tmp_path / "eggproxy.conf", graph, tmp_path / "cache")
    (tmp_path / "r.txt").write_text(text)
    result = eggproxy(conf, "prefetch", "-r", str(tmp_path / "r.txt"))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


SET = ("demo-pkg", "sdist-only", "dotted-name")


@pytest.mark.parametrize("upstream", ["json"], indirect=True)
def test_export_import_round_trip_with_every_upstream_down(
    upstream: Upstream, tmp_path: Path, client_tools: ClientTools
) -> None:
    with start_serve(upstream.url, tmp_path / "online") as server:
        clients = IndexClients(client_tools, server.url, tmp_path / "fill")
        clients.pip_install(clients.pip_venv(), *SET)
    online = configuration(tmp_path / "online.conf", upstream, tmp_path / "online")
    export = tmp_path / "export"
    result = eggproxy(online, "export", str(export))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("exported 4 projects, 4 files ")  # with dep-pkg

    offline = configuration(tmp_path / "offline.conf", upstream, tmp_path / "offline")
    result = eggproxy(offline, "import", str(export))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("4 pages written, 0 refused")
    upstream.stop()

    expected = {"demo-pkg": "2.0", "dep-pkg": "1.0", "sdist-only": "1.1", "dotted-name": "1.0"}
    with start_serve(upstream.url, tmp_path / "offline") as server:
        clients = IndexClients(client_tools, server.url, tmp_path / "served")
        venv = clients.pip_venv()
        clients.pip_install(venv, *SET)
        assert expected.items() <= clients.installed(venv).items()
        uv_venv = clients.bare_venv()
        clients.uv_pip_install(uv_venv, *SET)
        assert expected.items() <= clients.installed(uv_venv).items()

    # The export itself, as a static index read straight from disk.
    clients = IndexClients(client_tools, (export / "simple").as_uri() + "/", tmp_path / "file")
    venv = clients.pip_venv()
    clients.pip_install(venv, *SET)
    assert expected.items() <= clients.installed(venv).items()


@pytest.mark.parametrize("upstream", ["json"], indirect=True)
def test_import_refuses_tampered_files(upstream: Upstream, tmp_path: Path) -> None:
    from eggproxy.config import load_config
    from eggproxy.names import NormalizedName
    from eggproxy.proxy import Proxy

    online = configuration(tmp_path / "online.conf", upstream, tmp_path / "online")
    proxy = Proxy(load_config(online))
    proxy.prepare()
    proxy.file(NormalizedName("dep-pkg"), "dep_pkg-1.0-py3-none-any.whl")
    proxy.close()
    export = tmp_path / "export"
    assert eggproxy(online, "export", str(export), "dep-pkg").returncode == 0
    (export / "simple" / "dep-pkg" / "dep_pkg-1.0-py3-none-any.whl").write_bytes(b"evil")
    offline = configuration(tmp_path / "offline.conf", upstream, tmp_path / "offline")
    result = eggproxy(offline, "import", str(export))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "refused dep-pkg/dep_pkg-1.0-py3-none-any.whl: expected sha256="
    )
    assert not (tmp_path / "offline" / "dep-pkg" / "dep_pkg-1.0-py3-none-any.whl").exists()
