"""Integration harness: Debian's real nginx in front of ``eggproxy serve``, on 127.0.0.1.

``eggproxy serve`` starts first (see :mod:`standalone`); then ``eggproxy deploy nginx`` prints
the site file for its configuration (its ``bind`` is the server's port), and nginx runs in the
foreground with a generated ``nginx.conf`` that ``include``\\ s that file inside ``http {}``, as
Debian's ``nginx.conf`` includes ``sites-enabled/*``.  nginx's temp paths, its page cache, its
pid file and logs live in the front end's own directory (``nginx -p DIR -c DIR/nginx.conf``);
started as root, its workers run as ``www-data``, so everything they read is world-readable
under ``/tmp``.  It is stopped by its PID.

::

    with NginxProxy(upstream.url, index_ttl=1) as proxy:
        requests.get(proxy.url + "demo-pkg/")   # proxy.url == "http://127.0.0.1:PORT/simple/"
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Final

from tests.integration.apache import public_dir
from tests.integration.standalone import StandaloneServer
from tests.support import ServerHarness, clean_env, eggproxy_ini, free_port

NGINX: Final = Path("/usr/sbin/nginx")
RUN_AS: Final = "www-data"
MIME_TYPES: Final = Path("/etc/nginx/mime.types")
START_TIMEOUT: Final = 20.0  # seconds for nginx to listen
LOG_FORMAT: Final = '$status $upstream_cache_status "$upstream_addr" "$request" $body_bytes_sent'

_RUNNING: weakref.WeakSet[NginxProxy] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


class NginxError(RuntimeError):
    """nginx did not start (the message carries its error log)."""


def unavailable_reason() -> str | None:
    """Why this machine cannot run the harness, or ``None`` if it can."""
    if not NGINX.is_file():
        return f"{NGINX} is missing (apt install nginx)"
    if os.geteuid() != 0:
        return f"nginx must start as root to switch to {RUN_AS}"
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        return f"no {RUN_AS} user for nginx to run as"
    return None


def require_nginx() -> None:
    """``pytest.skip`` the calling test if nginx cannot run here."""
    reason = unavailable_reason()
    if reason:
        import pytest

        pytest.skip(f"nginx integration tests: {reason}")


def deploy_nginx(config: Path, listen: str, page_cache: Path) -> str:
    """What ``eggproxy deploy nginx -c CONFIG --listen LISTEN`` prints (it must succeed)."""
    cmd = [sys.executable, "-m", "eggproxy", "deploy", "nginx", "-c", str(config)]
    cmd += ["--listen", listen, "--nginx-cache", str(page_cache)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=60)
    if done.returncode != 0:
        raise NginxError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def main_config(base: Path, site: Path, workers: int = 2, access_log: bool = True) -> str:
    """An ``nginx.conf`` like Debian's whose ``http {}`` includes ``site``; paths under ``base``."""
    temp = "\n".join(
        f"    {module}_temp_path {base}/tmp/{module};"
        for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = f"user {RUN_AS};" if os.geteuid() == 0 else ""
    mime = f"include {MIME_TYPES};" if MIME_TYPES.exists() else ""
    log = f"{base}/logs/access.log eggproxy" if access_log else "off"
    return f"""\
{user}
worker_processes {workers};
daemon off;
master_process on;
pid {base}/run/nginx.pid;
error_log {base}/logs/error.log notice;
events {{
    worker_connections 512;
}}
http {{
    sendfile on;
    tcp_nopush on;
    {mime}
    default_type application/octet-stream;
    log_format eggproxy '{LOG_FORMAT}';
    access_log {log};
{temp}
    include {site};
}}
"""


class NginxProxy(ServerHarness):
    """eggproxy serve behind a private nginx, wired by ``eggproxy deploy nginx``."""

    def __init__(
        self,
        index: str,
        *,
        index_ttl: int = 300,
        timeout: float = 10.0,
        extra_config: str = "",
        workers: int = 2,
        start: bool = True,
    ) -> None:
        self.index, self.index_ttl, self.timeout = index, index_ttl, timeout
        self.extra_config, self.workers = extra_config, workers
        self.base = public_dir("eggproxy-nginx-")
        self.cache_dir = self.base / "cache"
        self.logs, self.page_cache = self.base / "logs", self.base / "pages"
        for directory in (self.cache_dir, self.logs, self.base / "run", self.base / "tmp"):
            directory.mkdir(mode=0o755)
        self.config_path = self.base / "eggproxy.conf"
        self.site = self.base / "eggproxy-site.conf"
        self.nginx_conf = self.base / "nginx.conf"
        self.serve = StandaloneServer(
            index, self.cache_dir, index_ttl=index_ttl, timeout=timeout, extra_config=extra_config
        )
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start_or_clean_up()

    # --- configuration -------------------------------------------------------

    def write_config(self) -> None:
        """The eggproxy configuration (bind = the running server), the site file, nginx.conf."""
        settings = {"cache_dir": self.cache_dir, "index": self.index}
        settings |= {"bind": f"127.0.0.1:{self.serve.port}"}
        settings |= {"index_ttl": self.index_ttl, "timeout": self.timeout}
        self.config_path.write_text(eggproxy_ini(settings, self.extra_config))
        listen = f"127.0.0.1:{self.port}"
        self.site.write_text(deploy_nginx(self.config_path, listen, self.page_cache))
        self.nginx_conf.write_text(main_config(self.base, self.site, self.workers))

    def test_config(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the generated configuration."""
        return subprocess.run(
            [str(NGINX), "-t", "-p", str(self.base), "-c", str(self.nginx_conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    # --- process -------------------------------------------------------------

    def start(self, attempts: int = 3) -> None:
        """Start eggproxy serve, then nginx on a free port; wait (bounded) until it listens."""
        if not self.serve.running():
            self.serve.start()
        for attempt in range(attempts):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}/simple/"
            self.write_config()
            try:
                self._launch()
                return
            except NginxError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise

    def _launch(self) -> None:
        self.launch(
            [str(NGINX), "-p", str(self.base), "-c", str(self.nginx_conf)], self.logs / "stderr.log"
        )
        _RUNNING.add(self)
        why = self.wait_listening(self._pid_written, START_TIMEOUT)
        if why is not None:
            raise NginxError(f"nginx {why}:\n{self.error_log_text()}")

    def _pid_written(self) -> bool:
        try:
            text = (self.base / "run" / "nginx.pid").read_text().strip()
        except FileNotFoundError:
            return False
        return self.process is not None and text == str(self.process.pid)

    def stop(self) -> None:
        """Stop nginx (SIGTERM by PID, bounded wait, then SIGKILL its group), then eggproxy."""
        super().stop()
        self.serve.stop()

    # --- logs ----------------------------------------------------------------

    def error_log_text(self) -> str:
        parts = []
        for path in (self.logs / "stderr.log", self.logs / "error.log", self.serve.log_path):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace")
                if text.strip():
                    parts.append(f"--- {path.name} ---\n{text[-6000:]}")
        return "\n".join(parts) or "(empty error logs)"

    def log_text(self) -> str:
        return self.error_log_text()

    def access_log_lines(self) -> list[str]:
        """nginx's access lines: ``STATUS CACHE-STATUS "UPSTREAM" "REQUEST" BYTES``."""
        try:
            return (self.logs / "access.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
