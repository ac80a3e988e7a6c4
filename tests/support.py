"""Helpers every test harness and benchmark shares: ports, environments, processes.

Imported as ``tests.support`` by the integration harnesses and by ``bench/``
(run as ``python -m bench.run`` from the repository root), so there is one
copy of each.  Only processes a harness started itself are ever signalled,
always by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, Self

# Proxy settings of this machine must never reach a client or server under test.
PROXY_VARIABLES: Final = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
)
STOP_TIMEOUT: Final = 30.0  # seconds after the signal before SIGKILL


def is_proxy_variable(name: str) -> bool:
    return name.lower() in PROXY_VARIABLES


def clean_env(
    extra: Mapping[str, str] | None = None,
    *,
    drop_prefixes: tuple[str, ...] = ("PIP_", "EGGPROXY_"),
) -> dict[str, str]:
    """This process's environment without proxy settings and the given prefixes."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(drop_prefixes) and not is_proxy_variable(key)
    }
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from ``/proc``; empty if it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return sorted(set(found))


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (e.g. ``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return int(value.split()[0]) * 1024
    raise KeyError(field)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def granian_workers(pid: int) -> list[int]:
    """Granian's worker processes under main process ``pid`` (not multiprocessing helpers)."""
    found = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def stop_group(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a server we started (by PID), bounded wait, then SIGKILL its process group.

    For servers started in a session of their own (Apache, nginx, varnishd): the
    group is the one Popen made for them, their master and its children.
    """
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def stop_process(
    proc: subprocess.Popen[bytes],
    extra: Sequence[int] = (),
    sig: int = signal.SIGTERM,
    timeout: float = STOP_TIMEOUT,
) -> int:
    """Signal ``proc``, wait (bounded), then SIGKILL it and the listed PIDs still alive.

    Returns its exit code (negative: killed by that signal).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)
    # Workers left behind by a killed main process are ours to end too.
    for pid in extra:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return proc.returncode


def eggproxy_ini(settings: Mapping[str, object], extra: str = "") -> str:
    """An eggproxy configuration file: ``[eggproxy]`` with ``settings``, then ``extra`` sections."""
    lines = ["[eggproxy]", *(f"{key} = {value}" for key, value in settings.items())]
    return "\n".join(lines) + "\n" + extra


class ServerHarness:
    """A server (Apache, nginx, varnishd) a test started under a directory of its own.

    Its process runs in a session of its own, so stopping it ends its children
    too; ``cleanup`` stops it and removes the directory.  A context manager.
    """

    base: Path
    port: int
    process: subprocess.Popen[bytes] | None
    stop_timeout: float = 10.0  # seconds after SIGTERM before SIGKILL

    def launch(self, cmd: Sequence[str], log: Path) -> None:
        """Run ``cmd`` in a session of its own (its children are its group), output to ``log``."""
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                cwd=self.base,
                start_new_session=True,
            )

    def wait_listening(self, started: Callable[[], bool], timeout: float) -> str | None:
        """Wait (bounded) until ``started()`` and ``port`` accepts: ``None``, else why not.

        A server that never listens is stopped; one that exited is gone already.
        """
        assert self.process is not None, "not launched"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                return f"exited with {code}"
            if started():
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return None
            time.sleep(0.05)
        self.stop()
        return f"not listening after {timeout}s"

    def start(self) -> object:
        raise NotImplementedError

    def start_or_clean_up(self) -> None:
        """Start; if that fails, leave nothing behind (no process, no directory)."""
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise

    def stop(self) -> None:
        """SIGTERM the server by PID, bounded wait, then SIGKILL its group; idempotent."""
        process, self.process = self.process, None
        stop_group(process, self.stop_timeout)

    def cleanup(self) -> None:
        """Stop, then remove the whole directory (caches, configuration, logs)."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
