"""Real package clients (pip, uv, poetry, zc.buildout, easy_install) run against one index.

* :class:`ClientTools` (one per test session) builds the virtual environments that hold the
  clients.  Their own installs (a current pip, zc.buildout, setuptools 79.0.1 for easy_install)
  come from this machine's normal package index, with its normal pip configuration.
* :class:`IndexClients` (one per test) runs those clients against one index URL only: no pip or
  uv configuration file, no ``PIP_*``/``UV_*``/proxy variables but the ones set here, no caches,
  and ``HOME`` in the test's own directory (so no ``~/.pydistutils.cfg``, ``~/.netrc`` or
  ``~/.buildout`` of this machine is read).

A client that fails raises :class:`ClientError` with its command line and output.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from tests.support import is_proxy_variable

# Taken at import, before any fixture cleans the environment: tool installs need this
# machine's normal pip settings (find-links, constraints, certificates).
NORMAL_ENVIRON: Final = dict(os.environ)
Args = Sequence[str | Path]  # a command line
CLIENT_TIMEOUT: Final = 600.0  # seconds for one client run: a guard against hangs, not a limit
DROPPED_PREFIXES: Final = ("PIP_", "UV_", "EGGPROXY_", "PYTHON", "BUILDOUT_", "SETUPTOOLS_")
DROPPED_NAMES: Final = {"VIRTUAL_ENV", "CONDA_PREFIX", "DISTUTILS_USE_SDK", "__PYVENV_LAUNCHER__"}
EASY_INSTALL_VERSION: Final = "79.0.1"  # the newest setuptools whose easy_install still runs
BUILDOUT_TOOLS: Final = ("zc.buildout", "zc.recipe.egg", "wheel")
# setuptools 79 has no ``easy_install`` console script or ``main``: run the command through
# ``setup()``, from an empty working directory so that no ``setup.cfg`` is read.
EASY_INSTALL_SHIM: Final = (
    "import sys, setuptools\n"
    "setuptools.setup(script_name='easy_install', script_args=['easy_install', *sys.argv[1:]])\n"
)
_DISTRIBUTIONS: Final = (
    "import importlib.metadata as m, json\n"
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))\n"
)


class ClientError(AssertionError):
    """A client exited non-zero; the message holds its command line and output."""


def canonicalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def run(
    cmd: Args,
    env: Mapping[str, str],
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with exactly ``env``; raise :class:`ClientError` if ``check`` and it fails."""
    args = [str(part) for part in cmd]
    result = subprocess.run(
        args,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )
    if check and result.returncode != 0:
        raise ClientError(
            f"{' '.join(args)}\nexit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


@dataclass(frozen=True)
class Venv:
    """A virtual environment at ``root``."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def clone(self, dest: Path) -> Venv:
        """Copy this environment to ``dest`` (cheaper than a new one; scripts keep old paths).

        Run the copy's tools as ``python -m TOOL``: console scripts name the original python.
        """
        shutil.copytree(self.root, dest, symlinks=True)
        return Venv(dest)

    def distributions(self, env: Mapping[str, str]) -> dict[str, str]:
        """Installed distributions: canonical name -> version."""
        out = run([self.python, "-c", _DISTRIBUTIONS], env).stdout
        return {canonicalize(name): version for name, version in json.loads(out).items()}


def create_venv(dest: Path, with_pip: bool = False) -> Venv:
    """A new stdlib venv (``ensurepip`` is offline; ~3 s with pip, ~0.1 s without)."""
    flags = [] if with_pip else ["--without-pip"]
    cmd: Args = [sys.executable, "-m", "venv", *flags, dest]
    run(cmd, normal_env())
    return Venv(dest)


def normal_env() -> dict[str, str]:
    """This machine's environment as it was at import, for installing the clients themselves."""
    return {k: v for k, v in NORMAL_ENVIRON.items() if k != "VIRTUAL_ENV"}


def install_tools(venv: Venv, *requirements: str) -> None:
    """``pip install --upgrade`` into ``venv`` from this machine's normal package index."""
    cmd: Args = [venv.python, "-m", "pip", "install", "--quiet", "--upgrade", *requirements]
    run(cmd, normal_env())


def find_uv() -> Path:
    """The ``uv`` binary of the ``uv`` package installed beside the tests, or on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found is None:
            raise FileNotFoundError("uv is not installed (pip install uv)") from None
        return Path(found)
    return Path(find_uv_bin())


class ClientTools:
    """The clients' environments, each made on first use and then shared by a test session."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cached_property
    def pip_template(self) -> Venv:
        """A venv with a current pip, cloned for every test that installs with pip."""
        venv = create_venv(self.root / "pip-template", with_pip=True)
        install_tools(venv, "pip")
        return venv

    @functools.cached_property
    def buildout(self) -> Venv:
        """zc.buildout with zc.recipe.egg (its recipe is used from here, not fetched)."""
        venv = self.pip_template.clone(self.root / "buildout")
        install_tools(venv, *BUILDOUT_TOOLS)
        return venv

    @functools.cached_property
    def easy_install(self) -> Venv:
        venv = self.pip_template.clone(self.root / "easy-install")
        install_tools(venv, f"setuptools=={EASY_INSTALL_VERSION}")
        return venv

    @functools.cached_property
    def uv(self) -> Path:
        return find_uv()

    @functools.cached_property
    def poetry(self) -> Venv:
        """Poetry in its own venv, installed from this machine's normal package index."""
        venv = create_venv(self.root / "poetry", with_pip=True)
        install_tools(venv, "poetry")
        return venv


@dataclass(frozen=True)
class BuildoutRun:
    """What one buildout run left: its output and where the eggs and downloads went."""

    process: subprocess.CompletedProcess[str]
    eggs_dir: Path
    download_dir: Path

    def eggs(self) -> list[str]:
        """Names of the installed eggs (buildout 6 puts them under ``eggs_dir/v5/``)."""
        return sorted(p.name for p in self.eggs_dir.rglob("*.egg"))


class IndexClients:
    """The real clients run, isolated, against ``index_url`` only, working in ``workdir``."""

    def __init__(self, tools: ClientTools, index_url: str, workdir: Path) -> None:
        self.tools = tools
        self.index_url = index_url
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    # --- environment -------------------------------------------------------------------

    def env(
        self, venv: Venv | None = None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The isolated environment: nothing of this machine's pip, uv or proxy settings."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(DROPPED_PREFIXES)
            and key not in DROPPED_NAMES
            and not is_proxy_variable(key)
        }
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            PIP_CONFIG_FILE=os.devnull,  # no pip.conf at all, not even /etc/xdg/pip
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_INPUT="1",
            UV_NO_CONFIG="1",
            UV_NO_CACHE="1",
            UV_PYTHON_DOWNLOADS="never",
            PYTHONNOUSERSITE="1",
        )
        if venv is not None:
            env["PATH"] = f"{venv.bin}{os.pathsep}{env.get('PATH', os.defpath)}"
        env.update(extra or {})
        return env

    def run(
        self,
        cmd: Args,
        venv: Venv | None = None,
        cwd: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return run(cmd, self.env(venv, extra_env), cwd or self.workdir, check)

    # --- target environments -----------------------------------------------------------

    def pip_venv(self, name: str = "pip-venv") -> Venv:
        """A fresh venv holding pip (a copy of the session's template)."""
        return self.tools.pip_template.clone(self.workdir / name)

    def bare_venv(self, name: str = "venv") -> Venv:
        """A fresh venv without pip (for uv)."""
        return create_venv(self.workdir / name)

    def installed(self, venv: Venv) -> dict[str, str]:
        """Canonical name -> version of what ``venv`` holds."""
        return venv.distributions(self.env(venv))

    def python(self, venv: Venv, code: str, path: Sequence[Path] = ()) -> str:
        """Run ``code`` in ``venv`` (``path`` added as site dirs, so ``.pth`` files count)."""
        prelude = "".join(f"import site; site.addsitedir({str(p)!r})\n" for p in path)
        return self.run([venv.python, "-c", prelude + code], venv).stdout.strip()

    # --- clients -----------------------------------------------------------------------

    def pip(self, venv: Venv, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m pip ARGS --index-url INDEX --no-cache-dir`` in ``venv``."""
        cmd: Args = [venv.python, "-m", "pip", *args, "--index-url", self.index_url]
        return self.run([*cmd, "--no-cache-dir"], venv)

    def pip_install(self, venv: Venv, *requirements: str) -> subprocess.CompletedProcess[str]:
        return self.pip(venv, "install", *requirements)

    def pip_download(
        self, venv: Venv, dest: Path, *requirements: str, sdist_only: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``pip download --no-deps [--no-binary :all:] -d DEST``."""
        binary = ["--no-binary", ":all:"] if sdist_only else []
        return self.pip(venv, "download", "--no-deps", *binary, "-d", str(dest), *requirements)

    def uv_pip_install(self, venv: Venv, *requirements: str) -> subprocess.CompletedProcess[str]:
        """``uv pip install --index-url INDEX --no-cache --python VENV/bin/python``."""
        cmd: Args = [self.tools.uv, "pip", "install", "--index-url", self.index_url, "--no-cache"]
        return self.run([*cmd, "--python", venv.python, *requirements], venv)

    def poetry_lock(
        self, requirements: Sequence[str], name: str = "poetry-project", check: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        """``poetry --no-cache lock`` of a project needing ``requirements``, this index only.

        The index is the project's one source (``priority = "primary"``: PyPI is then not
        used); Poetry's cache and config live in the test's directory.  Returns the run
        and the locked versions (canonical name -> version).
        """
        directory = self.workdir / name
        directory.mkdir()
        deps = ", ".join(json.dumps(r) for r in requirements)
        (directory / "pyproject.toml").write_text(
            textwrap.dedent(
                f"""\
                [project]
                name = "guarded-app"
                version = "0.1.0"
                requires-python = ">=3.9"
                dependencies = [{deps}]

                [tool.poetry]
                package-mode = false

                [[tool.poetry.source]]
                name = "eggproxy"
                url = "{self.index_url}"
                priority = "primary"
                """
            )
        )
        extra = {
            "POETRY_CACHE_DIR": str(self.workdir / "poetry-cache"),
            "POETRY_CONFIG_DIR": str(self.workdir / "poetry-config"),
            "POETRY_NO_INTERACTION": "1",
            "POETRY_VIRTUALENVS_CREATE": "false",
        }
        venv = self.tools.poetry
        cmd: Args = [venv.bin / "poetry", "--no-cache", "lock"]
        process = self.run(cmd, venv, directory, extra, check)
        locked: dict[str, str] = {}
        lock = directory / "poetry.lock"
        if lock.exists():
            import tomllib

            for package in tomllib.loads(lock.read_text()).get("package", []):
                locked[canonicalize(package["name"])] = package["version"]
        return process, locked

    def buildout(self, eggs: Sequence[str], name: str = "buildout") -> BuildoutRun:
        """Run zc.buildout with ``index =`` this index and one ``zc.recipe.egg`` part.

        The recipe comes from the buildout venv itself (``newest = false``); ``allow-hosts``
        is the index's host and port only, so nothing else is ever contacted.  The pip that
        buildout calls to unpack what it fetched gets this index too (``PIP_INDEX_URL``).
        """
        directory = self.workdir / name
        directory.mkdir()
        eggs_dir, download_dir = directory / "eggs", directory / "downloads"
        egg_lines = "\n".join(f"    {egg}" for egg in eggs)
        config = textwrap.dedent(
            f"""\
            [buildout]
            index = {self.index_url}
            allow-hosts = {urlsplit(self.index_url).netloc}
            find-links =
            parts = eggs
            newest = false
            offline = false
            eggs-directory = {eggs_dir}
            download-cache = {download_dir}

            [eggs]
            recipe = zc.recipe.egg
            eggs =
            """
        )
        (directory / "buildout.cfg").write_text(config + egg_lines + "\n")
        venv = self.tools.buildout
        extra = {"PIP_INDEX_URL": self.index_url, "PIP_NO_CACHE_DIR": "1"}
        process = self.run(
            [venv.bin / "buildout", "-c", directory / "buildout.cfg"], venv, directory, extra
        )
        return BuildoutRun(process, eggs_dir, download_dir)

    def easy_install(
        self, install_dir: Path, *requirements: str
    ) -> subprocess.CompletedProcess[str]:
        """setuptools 79's easy_install: ``-i INDEX --allow-hosts HOST:PORT --install-dir DIR``."""
        install_dir.mkdir(parents=True, exist_ok=True)
        cwd = self.workdir / "easy-install-cwd"
        cwd.mkdir(exist_ok=True)
        venv = self.tools.easy_install
        options = ["-i", self.index_url, "--allow-hosts", urlsplit(self.index_url).netloc]
        cmd: Args = [venv.python, "-c", EASY_INSTALL_SHIM, *options, "--install-dir", install_dir]
        extra = {"PYTHONPATH": str(install_dir)}
        return self.run([*cmd, *requirements], venv, cwd, extra)
