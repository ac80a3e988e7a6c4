"""Run ``eggproxy serve`` (the standalone server on granian) as a subprocess, for tests.

:func:`start_serve` is the front-end starter: it takes the upstream index URL and a cache
directory, starts the server on a free ``127.0.0.1`` port and returns once it answers. The
server's output goes to a log file next to the cache directory (``<cache>.serve.log``).
:func:`serve_front_end` adapts it to the conftest's starter signature.

The clients at the end (:func:`fetch`, :func:`fetch_concurrently`, :func:`raw_request`)
never raise for a response cut short: they report how it ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests
from tests import support
from tests.support import eggproxy_ini, free_port, granian_workers, stop_process

READY_TIMEOUT: Final = 20.0  # seconds for the server to answer after start
STOP_TIMEOUT: Final = support.STOP_TIMEOUT
CLIENT_TIMEOUT: Final = 60.0  # seconds for one client request (catches a hang, times nothing)
PROBE_PATH: Final = "/not-the-index"  # answered 404 without contacting the upstream


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without pip, proxy and eggproxy settings."""
    return support.clean_env(extra)


class StandaloneServer:
    """One ``eggproxy serve`` process (granian main process plus its workers)."""

    def __init__(
        self,
        upstream_url: str,
        cache_dir: Path,
        *,
        workers: int | str | None = None,  # None: the default (auto)
        index_ttl: int | None = None,
        timeout: float | None = None,
        config: dict[str, str] | None = None,
        access_log: bool = True,
        extra_config: str = "",
        port: int | None = None,
    ) -> None:
        self.upstream_url = upstream_url
        self.fixed_port = port  # None: a free port, chosen at start
        self.extra_config = extra_config  # more sections, e.g. [source:NAME]
        self.cache_dir = Path(cache_dir)
        self.workers = workers
        self.settings: dict[str, str] = dict(config or {})
        if index_ttl is not None:
            self.settings["index_ttl"] = str(index_ttl)
        if timeout is not None:
            self.settings["timeout"] = str(timeout)
        self.access_log = access_log
        self.log_path = self.cache_dir.with_name(self.cache_dir.name + ".serve.log")
        self.config_path = self.cache_dir.with_name(self.cache_dir.name + ".serve.conf")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # --- lifecycle ---------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "eggproxy", "serve", "-c", str(self.config_path)]
        cmd += ["--bind", f"127.0.0.1:{self.port}", "--cache-dir", str(self.cache_dir)]
        cmd += ["--index", self.upstream_url]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        if not self.access_log:
            cmd.append("--no-access-log")
        return cmd

    def start(self, ready_timeout: float = READY_TIMEOUT, attempts: int = 3) -> StandaloneServer:
        """Start on a free port; wait (bounded) until it answers; retry if the port was taken."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(eggproxy_ini(self.settings, self.extra_config))
        for attempt in range(attempts):
            self.port = self.fixed_port or free_port()
            with self.log_path.open("ab") as log:
                log.write(f"--- start: {' '.join(self.command())}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=clean_env(),
                    cwd=self.cache_dir.parent,
                )
            if self._wait_ready(ready_timeout):
                return self
            exited = self.proc.poll() is not None
            self.stop(signal.SIGKILL, timeout=5)
            if not exited or attempt == attempts - 1 or self.fixed_port:
                break
        raise RuntimeError(f"eggproxy serve did not become ready:\n{self.log_text()[-4000:]}")

    def _wait_ready(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        for _ in range(int(limit / 0.05) + 1):
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", PROBE_PATH)
                    if conn.getresponse().status == 404:
                        return True
                finally:
                    conn.close()
            time.sleep(0.05)
        return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send ``sig`` to the main process, wait up to ``timeout``, then SIGKILL everything.

        Returns the main process's exit code (negative: killed by that signal).
        """
        proc = self.proc
        if proc is None:
            return self.returncode
        stop_process(proc, self.worker_pids(), sig, timeout)
        self.returncode = proc.returncode
        self.proc = None
        return self.returncode

    def __enter__(self) -> StandaloneServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- introspection -----------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not running"
        return self.proc.pid

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/simple/"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """Granian worker processes: children of the main process running eggproxy."""
        return granian_workers(self.proc.pid) if self.proc is not None else []

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def start_serve(upstream_url: str, cache_dir: Path, **options: Any) -> StandaloneServer:
    """Start ``eggproxy serve`` for ``upstream_url`` on ``cache_dir``; return it once ready.

    Options: ``workers``, ``index_ttl``, ``timeout``, ``config`` (more ``[eggproxy]`` keys),
    ``extra_config`` (more sections), ``access_log``, ``ready_timeout``.
    """
    ready_timeout = float(options.pop("ready_timeout", READY_TIMEOUT))
    return StandaloneServer(upstream_url, cache_dir, **options).start(ready_timeout)


def serve_front_end(request: Any, upstream_url: str, options: Any) -> StandaloneServer:
    """The conftest starter ``(request, upstream_url, ProxyOptions)``: a fresh cache per test."""
    tmp: Path = request.getfixturevalue("tmp_path_factory").mktemp("serve")
    return start_serve(
        upstream_url,
        tmp / "cache",
        index_ttl=options.index_ttl,
        timeout=options.timeout,
        extra_config=options.extra_config,
        workers=getattr(options, "workers", None),
    )


# --- clients -----------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_url(server: StandaloneServer, project: str, filename: str) -> str:
    return f"{server.url}{project}/{filename}"


@dataclass
class Fetch:
    """What one client got for a file: status, declared length, bytes read, how it ended."""

    status: int = 0
    length: int | None = None
    received: int = 0
    digest: str = ""
    error: str | None = None
    first_chunk: threading.Event | None = None

    @property
    def complete(self) -> bool:
        return self.status == 200 and self.error is None and self.received == self.length


def fetch(url: str, result: Fetch | None = None, pause: float = 0.0) -> Fetch:
    """Download ``url`` in 1 MiB chunks, hashing as it goes; never raise for a cut body.

    ``pause``: seconds to sleep after each chunk, to play a client slower than the upstream.
    """
    result = result or Fetch()
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=CLIENT_TIMEOUT) as response:
            result.status = response.status_code
            if "content-length" in response.headers:
                result.length = int(response.headers["content-length"])
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                result.received += len(chunk)
                if result.first_chunk is not None:
                    result.first_chunk.set()
                if pause:
                    time.sleep(pause)
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        requests.ConnectionError,
    ) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.digest = digest.hexdigest()
        if result.first_chunk is not None:
            result.first_chunk.set()
    return result


def fetch_concurrently(url: str, clients: int) -> list[Fetch]:
    """``clients`` threads that start together and each download ``url``."""
    barrier = threading.Barrier(clients)
    results = [Fetch() for _ in range(clients)]

    def run(result: Fetch) -> None:
        barrier.wait(CLIENT_TIMEOUT)
        fetch(url, result)

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a client hung"
    return results


def leftovers(cache_dir: Path, project: str, filename: str) -> list[str]:
    """Names in the project's cache directory about ``filename`` (locks, failure markers aside)."""
    directory = cache_dir / project
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if filename in p.name and not p.name.endswith((".lock", ".failed"))
    )


def wait_until(predicate: Callable[[], bool], limit: float = 15.0) -> bool:
    """Poll ``predicate`` (bounded in count and time); return its last answer."""
    deadline = time.monotonic() + limit
    for _ in range(int(limit / 0.05) + 1):
        if predicate() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return predicate()


def raw_request(server: StandaloneServer, method: str, path: str) -> tuple[int, bytes]:
    """Send ``path`` byte for byte (no client-side normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
