"""Integration harness: Debian's real Varnish in front of ``eggproxy serve``, on 127.0.0.1.

Ports are chosen first, so that ``eggproxy serve``'s configuration can name
Varnish in ``purge_urls``; then ``eggproxy deploy varnish`` prints the VCL
for a configuration whose ``bind`` is the server's port, and ``varnishd``
runs in the foreground (``-F``) with its working directory (``-n``) and a
32 MB memory store private to the test.  Started as root, varnishd's worker
drops to Debian's ``vcache`` user by itself (the ``unix`` jail); no option
is needed.  It is stopped by its PID (SIGTERM, then SIGKILL of its group).

::

    with VarnishProxy(upstream.url) as tier:
        requests.get(tier.url + "demo-pkg/")   # tier.url == "http://127.0.0.1:PORT/simple/"
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Final

from tests.integration.apache import public_dir
from tests.integration.standalone import StandaloneServer
from tests.support import ServerHarness, clean_env, eggproxy_ini, free_port

VARNISHD: Final = Path("/usr/sbin/varnishd")
START_TIMEOUT: Final = 30.0  # seconds for varnishd to compile the VCL and listen

_RUNNING: weakref.WeakSet[VarnishProxy] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for tier in list(_RUNNING):
        tier.stop()


class VarnishError(RuntimeError):
    """varnishd did not start (the message carries its output)."""


def require_varnish() -> None:
    """``pytest.skip`` the calling test if varnishd cannot run here."""
    if not VARNISHD.is_file():
        import pytest

        pytest.skip(f"varnish integration tests: {VARNISHD} is missing (apt install varnish)")


class VarnishProxy(ServerHarness):
    """eggproxy serve behind a private varnishd, wired by ``eggproxy deploy varnish``."""

    def __init__(
        self,
        index: str,
        *,
        index_ttl: int = 300,
        timeout: float = 10.0,
        purge: bool = True,
        settings: dict[str, str] | None = None,
        workers: int | None = None,
        storage: str = "malloc,32m",
    ) -> None:
        self.storage = storage  # varnishd -s: bench/tier.py keeps a bigger herd file
        self.base = public_dir("eggproxy-varnish-")
        self.cache_dir = self.base / "cache"
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/simple/"
        config = dict(settings or {})
        if purge:
            config["purge_urls"] = self.root
        self.settings = config
        self.serve = StandaloneServer(
            index,
            self.cache_dir,
            index_ttl=index_ttl,
            timeout=timeout,
            config=config,
            workers=workers,
        )
        self.vcl = self.base / "eggproxy.vcl"
        self.log_path = self.base / "varnishd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_or_clean_up()

    def deploy(self) -> str:
        """What ``eggproxy deploy varnish -c CONFIG --listen ...`` prints for the running server."""
        config = self.base / "deploy.conf"
        settings = {"cache_dir": self.cache_dir, "index": self.serve.upstream_url}
        settings |= {"bind": f"127.0.0.1:{self.serve.port}", **self.serve.settings}
        config.write_text(eggproxy_ini(settings))
        cmd = [sys.executable, "-m", "eggproxy", "deploy", "varnish", "-c", str(config)]
        cmd += ["--listen", f"127.0.0.1:{self.port}"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=60)
        if done.returncode != 0:
            raise VarnishError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.serve.start()
        self.vcl.write_text(self.deploy())
        workdir = self.base / "varnish"
        cmd = [str(VARNISHD), "-F", "-a", f"127.0.0.1:{self.port}", "-f", str(self.vcl)]
        cmd += ["-n", str(workdir), "-s", self.storage, "-p", "default_grace=0"]
        self.launch(cmd, self.log_path)
        _RUNNING.add(self)
        why = self.wait_listening(lambda: "Child launched OK" in self.log_text(), START_TIMEOUT)
        if why is not None:
            raise VarnishError(f"varnishd {why}:\n{self.log_text()}")

    def stop(self) -> None:
        """Stop varnishd (SIGTERM by PID, bounded wait, then SIGKILL its group), then eggproxy."""
        super().stop()
        self.serve.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def requests_reaching_eggproxy(self) -> list[str]:
        """The request lines of eggproxy's access log (CLF), in order."""
        lines = []
        for line in self.serve.log_text().splitlines():
            _, quote, rest = line.partition('"')
            if quote and rest[:4] in ("GET ", "HEAD"):
                lines.append(rest.split('"', 1)[0])
        return lines
