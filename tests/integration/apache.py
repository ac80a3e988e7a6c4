"""Integration harness: a real Apache (prefork) + mod_python serving eggproxy on 127.0.0.1.

Apache runs in the foreground (``apache2 -f CONF -DFOREGROUND``) with a generated config and
switches to ``www-data``; mod_python embeds Debian's ``/usr/bin/python3``.  Everything Apache's
children read (the installed site dir, the eggproxy config) lives in world-readable
directories under ``/tmp``, never under pytest's private (mode 700) tmp dirs.

The virtual host is the one ``eggproxy deploy apache`` prints (``render_apache``), so the tested
configuration is the shipped one; the harness adds only what Debian's ``apache2.conf`` holds
(modules, MPM, main ``ErrorLog``) and a ``GlobalLog`` (``access.log``) naming, per request, the
child (``pid=``), what the eggproxy fixup did (``eggproxy=``, ``-`` when it did not run) and
mod_cache's verdict.  The vhost's own logs are ``logs/eggproxy-error.log`` and
``logs/eggproxy-access.log``.

::

    site = install_site()                     # once per session: eggproxy + deps, for www-data
    with ApacheProxy(site, upstream.url, index_ttl=1) as proxy:
        requests.get(proxy.url + "demo-pkg/")   # proxy.url == "http://127.0.0.1:PORT/simple/"
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

from tests.support import ServerHarness, eggproxy_ini, free_port

from eggproxy.config import load_config
from eggproxy.deploy.apache import MODULES as VHOST_MODULES
from eggproxy.deploy.apache import render_apache

APACHE = Path("/usr/sbin/apache2")
MODS_AVAILABLE = Path("/etc/apache2/mods-available")
MOD_PYTHON = Path("/usr/lib/apache2/modules/mod_python.so")
SYSTEM_PYTHON = Path("/usr/bin/python3")  # the interpreter mod_python embeds
RUN_AS = "www-data"
MODULES = ("mpm_prefork", *VHOST_MODULES)
DEPENDENCIES = (
    "packaging",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
    "ijson",
    "prometheus-client",
    # As the README's recipe installs it: a compiled module, loaded in mod_python's interpreter.
    "orjson",
)
REPO_ROOT = Path(__file__).resolve().parents[2]
# The child that answered, what the eggproxy fixup did ("-": it did not run), what mod_cache did.
LOG_FORMAT = r"%h pid=%P %t \"%r\" %>s %b %{ms}Tms eggproxy=%{eggproxy}n \"%{cache-status}e\""
START_TIMEOUT = 20.0  # seconds for Apache to listen

# Apache runs in its own session (see ``_launch``), so no terminal signal reaches it: stop
# whatever is still running when the test process exits.
_RUNNING: weakref.WeakSet[ApacheProxy] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


class ApacheError(RuntimeError):
    """Apache did not start (the message carries its error log)."""


def unavailable_reason() -> str | None:
    """Why this machine cannot run the harness, or ``None`` if it can."""
    if not APACHE.is_file():
        return f"{APACHE} is missing (apt install apache2)"
    if not MOD_PYTHON.is_file():
        return f"{MOD_PYTHON} is missing (apt install libapache2-mod-python)"
    if not SYSTEM_PYTHON.is_file():
        return f"{SYSTEM_PYTHON} (the Python mod_python embeds) is missing"
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        return f"no {RUN_AS} user for Apache to run as"
    if os.geteuid() != 0:
        return f"Apache must start as root to switch to {RUN_AS}"
    return None


def require_apache() -> None:
    """``pytest.skip`` the calling test if Apache + mod_python cannot run here."""
    reason = unavailable_reason()
    if reason:
        import pytest

        pytest.skip(f"Apache integration tests: {reason}")


def public_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that www-data can traverse and read (mode 755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def install_site(env: Mapping[str, str] | None = None) -> Path:
    """Install eggproxy (built from this checkout) and its dependencies for mod_python.

    Uses the normal pip environment (``env``, default ``os.environ``), as the dependencies come
    from an index.  The source is copied first so the build leaves nothing in the checkout.
    Returns a world-readable site directory; the caller removes it.
    """
    site = public_dir("eggproxy-site-")
    with tempfile.TemporaryDirectory(prefix="eggproxy-build-") as build:
        source = Path(build) / "src-copy"
        source.mkdir()
        for name in ("pyproject.toml", "setup.py", "README.rst"):
            if (REPO_ROOT / name).exists():
                shutil.copy2(REPO_ROOT / name, source / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        shutil.copytree(REPO_ROOT / "src", source / "src", ignore=ignore)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        command += ["--no-compile", "--target", str(site), str(source), *DEPENDENCIES]
        result = subprocess.run(
            command, env=dict(env or os.environ), capture_output=True, text=True, timeout=600
        )
    if result.returncode != 0:
        shutil.rmtree(site, ignore_errors=True)
        raise RuntimeError(f"pip install for mod_python failed:\n{result.stdout}{result.stderr}")
    for root, dirs, files in os.walk(site):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    check = f"import sys; sys.path.insert(0, {str(site)!r}); import eggproxy.proxy"
    result = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", "-c", check], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        shutil.rmtree(site, ignore_errors=True)
        raise RuntimeError(f"eggproxy does not import in {SYSTEM_PYTHON}:\n{result.stderr}")
    return site


def load_modules() -> str:
    """``LoadModule`` lines from Debian's ``mods-available`` (built-in modules are skipped)."""
    lines = []
    for name in MODULES:
        load = MODS_AVAILABLE / f"{name}.load"
        if load.exists():
            lines += [ln for ln in load.read_text().splitlines() if ln.startswith("LoadModule")]
    return "\n".join(lines)


class ApacheProxy(ServerHarness):
    """eggproxy behind a private Apache, wired like ``apache/eggproxy.vhost``."""

    # A child whose background revalidation still waits on a dead upstream joins it
    # at exit (Python joins executor threads), and Apache waits for the child: past a
    # few seconds the group is killed, as Apache itself would after its own timeout.
    stop_timeout = 3.0

    def __init__(
        self,
        site: Path,
        index: str,
        *,
        index_ttl: int = 300,
        timeout: float = 10.0,
        start_servers: int = 4,
        start: bool = True,
        extra_config: str = "",
        log_level: str = "info",
        extra_apache: str = "",
    ) -> None:
        self.site, self.index = site, index
        self.extra_config = extra_config
        self.log_level = log_level
        self.extra_apache = extra_apache  # appended to Apache's configuration (e.g. a vhost)
        self.index_ttl, self.timeout, self.start_servers = index_ttl, timeout, start_servers
        self.base = public_dir("eggproxy-apache-")
        self.cache_dir = self.base / "cache"
        self.logs = self.base / "logs"
        self.docroot = self.base / "htdocs"
        self.config_path = self.base / "eggproxy.conf"
        self.apache_conf = self.base / "apache2.conf"
        self.mod_cache = self.base / "mod_cache_disk"  # mod_cache's copies of fresh pages
        for directory in (self.cache_dir, self.logs, self.docroot, self.base / "run"):
            directory.mkdir(mode=0o755)
        self.mod_cache.mkdir(mode=0o700)
        user = pwd.getpwnam(RUN_AS)
        os.chown(self.cache_dir, user.pw_uid, user.pw_gid)
        os.chown(self.mod_cache, user.pw_uid, user.pw_gid)
        # A venv-shaped directory around the installed site, as ``render_apache`` expects.
        self.venv = self.base / "venv"
        lib = self.venv / "lib" / Path(os.path.realpath(SYSTEM_PYTHON)).name
        lib.mkdir(parents=True)
        (lib / "site-packages").symlink_to(site)
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start_or_clean_up()

    # --- configuration -------------------------------------------------------

    def write_config(self) -> None:
        settings = {"cache_dir": self.cache_dir, "index": self.index}
        settings |= {"index_ttl": self.index_ttl, "timeout": self.timeout}
        self.config_path.write_text(eggproxy_ini(settings, self.extra_config))
        self.config_path.chmod(0o644)
        servers = self.start_servers
        mime_types = Path("/etc/mime.types")
        types_config = f"TypesConfig {mime_types}" if mime_types.exists() else ""
        # The vhost is the one ``eggproxy deploy apache`` prints (and ``apache/eggproxy.vhost``
        # ships): only the server-wide settings a Debian apache2.conf would hold are ours.
        vhost = render_apache(
            load_config(self.config_path),
            server_name="127.0.0.1",
            listen=f"127.0.0.1:{self.port}",
            venv=self.venv,
            cache_root=self.mod_cache,
        )
        self.apache_conf.write_text(f"""\
ServerRoot "{self.base}"
DefaultRuntimeDir "{self.base}/run"
PidFile "{self.base}/run/apache2.pid"
Define APACHE_LOG_DIR "{self.logs}"
{load_modules()}
ServerName 127.0.0.1
User {RUN_AS}
Group {RUN_AS}
StartServers {servers}
MinSpareServers {servers}
MaxSpareServers {servers * 4}
ServerLimit 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0
Timeout 60
KeepAlive On
{types_config}
ErrorLog "{self.logs}/error.log"
LogLevel {self.log_level}
LogFormat "{LOG_FORMAT}" harness
GlobalLog "{self.logs}/access.log" harness
DocumentRoot "{self.docroot}"
<Directory />
    Options None
    AllowOverride None
    Require all denied
</Directory>
<Directory "{self.docroot}">
    Require all granted
</Directory>

{vhost}
{self.extra_apache}
""")

    # --- process -------------------------------------------------------------

    def start(self, attempts: int = 3) -> None:
        """Start Apache on a free port and wait (bounded) until it listens."""
        for attempt in range(attempts):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}/simple/"
            self.write_config()
            try:
                self._launch()
                return
            except ApacheError as exc:
                in_use = "Address already in use" in str(exc)
                if not in_use or attempt == attempts - 1:
                    raise

    def _launch(self) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        with open(self.logs / "stderr.log", "ab") as out:
            self.process = subprocess.Popen(
                [str(APACHE), "-f", str(self.apache_conf), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.base,
                # Its own process group: prefork's shutdown signals the whole group.
                start_new_session=True,
            )
        _RUNNING.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise ApacheError(f"apache2 exited with {code}:\n{self.error_log_text()}")
            if self._pid_written():  # written once the master has bound its listeners
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
            time.sleep(0.05)
        self.stop()
        raise ApacheError(f"apache2 not listening after {START_TIMEOUT}s:\n{self.error_log_text()}")

    def _pid_written(self) -> bool:
        try:
            text = (self.base / "run" / "apache2.pid").read_text().strip()
        except FileNotFoundError:
            return False
        return self.process is not None and text == str(self.process.pid)

    # --- logs ----------------------------------------------------------------

    def error_log_text(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log", "eggproxy-error.log"):
            with contextlib.suppress(FileNotFoundError):
                text = (self.logs / name).read_text(errors="replace")
                if text.strip():
                    parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts) or "(empty error log)"

    def log_text(self, name: str) -> str:
        """A file of ``logs/``: ``error.log`` is the main server's, ``eggproxy-*`` the vhost's."""
        try:
            return (self.logs / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log_lines(self) -> list[str]:
        try:
            return (self.logs / "access.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
