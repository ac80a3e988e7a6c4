#!/usr/bin/env python3
"""Benchmark ``eggproxy serve`` against nginx serving the same cache directory statically.

Not a test: pytest never collects it (``tests/`` is the only test path).  Run::

    python -m bench.run [--workers N] [--duration SECONDS] ...

It prints, in one run:

1. requests/s of a cached project page (HTML and PEP 691 JSON) and of a cached ~1 MB file,
   through ``eggproxy serve`` (access log on, its default, and ``--no-access-log``) and through
   nginx (``sendfile on``, ``worker_processes`` = ``--workers``) over the same directory;
2. the resident memory of eggproxy's worker process(es) while a file of >= 500 MB is served,
   as a miss streamed from the upstream and then as a hit;
3. the median time of a warm ``uv pip install`` and ``pip install`` of 30 small wheels through
   eggproxy and through nginx over the same cache directory.

Everything runs on 127.0.0.1: the upstream is the test double ``tests/integration/upstream.py``
serving wheels built with ``tests/integration/fixtures.py``.  See ``bench/README.rst``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tests.integration.fixtures import build_wheel
from tests.integration.upstream import Upstream
from tests.support import children, free_port, granian_workers, is_proxy_variable, stop_process

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent

JSON_ACCEPT: Final = "application/vnd.pypi.simple.v1+json"
REFERENCE: Final = "eggproxy (reference)"
CPU: Final = "µs CPU/req"
# Issue 12: hits of eggproxy serve against nginx with as many workers, same run.
FILE_TARGET: Final = 0.9  # a cached 1 MB file
PAGE_TARGET: Final = 0.6  # a fresh cached page
HTML_ACCEPT: Final = "text/html"
PREFIX: Final = "/simple/"
READY_TIMEOUT: Final = 20.0  # seconds for a server to answer after start
INSTALL_TIMEOUT: Final = 300.0  # seconds for one pip/uv install

PAGE_PROJECT: Final = "benchpage"
FILE_PROJECT: Final = "benchfile"
FILE_NAME: Final = "benchfile-1.0.tar.gz"
BIG_PROJECT: Final = "benchbig"
BIG_NAME: Final = "benchbig-1.0.tar.gz"

NGINX_TEMPLATE: Final = HERE / "nginx.conf.in"


# --- small helpers ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without pip, uv, eggproxy or proxy settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_", "EGGPROXY_")) and not is_proxy_variable(key)
    }
    env.pop("VIRTUAL_ENV", None)
    env.update(extra or {})
    return env


def installer_env() -> dict[str, str]:
    """pip and uv isolated from this machine's configuration."""
    return clean_env(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
    )


def get(
    port: int, path: str, accept: str | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET on 127.0.0.1; return status, headers (lower-case names) and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def wait_ready(port: int, alive: Callable[[], bool], limit: float = READY_TIMEOUT) -> bool:
    """Poll (bounded) until something answers HTTP on ``port``."""
    deadline = time.monotonic() + limit
    for _ in range(int(limit / 0.05) + 1):
        if not alive() or time.monotonic() > deadline:
            return False
        with contextlib.suppress(OSError, http.client.HTTPException):
            get(port, "/not-the-index", timeout=2)
            return True
        time.sleep(0.05)
    return False


def proc_kb(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` in bytes (0 if the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    return 0


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# --- servers ---------------------------------------------------------------------------------


def eggproxy_command() -> list[str]:
    script = Path(sys.executable).with_name("eggproxy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "eggproxy"]


@dataclass
class Eggproxy:
    """``eggproxy serve`` as a subprocess (granian main process plus its workers)."""

    upstream_url: str
    cache: Path
    run: Path
    workers: int
    access_log: bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _workers: list[int] = field(default_factory=list)
    settings: str = ""  # more [eggproxy] lines (the metrics part)
    label: str = ""  # its name in the report, if not the default one
    source: Path | None = None  # run eggproxy from this source tree (a reference build)

    @property
    def name(self) -> str:
        return self.label or "eggproxy" + ("" if self.access_log else " --no-access-log")

    def start(self) -> Eggproxy:
        config = self.run / f"eggproxy-bench-{abs(hash(self.name))}.conf"
        config.write_text("[eggproxy]\nindex_ttl = 86400\ntimeout = 60\n" + self.settings)
        for _attempt in range(3):
            self.port = free_port()
            command = (
                eggproxy_command() if self.source is None else [sys.executable, "-m", "eggproxy"]
            )
            cmd = [*command, "serve", "-c", str(config)]
            cmd += ["--index", self.upstream_url, "--cache-dir", str(self.cache)]
            cmd += ["--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers)]
            if not self.access_log:
                cmd.append("--no-access-log")
            with (self.run / "eggproxy.log").open("ab") as out:
                out.write(f"--- {' '.join(cmd)}\n".encode())
                out.flush()
                extra = {"PYTHONPATH": str(self.source)} if self.source is not None else None
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=clean_env(extra)
                )
            if wait_ready(self.port, self.running):
                # Workers answer once forked; wait (bounded) until all of them are there.
                for _ in range(100):
                    if len(self.worker_pids()) >= self.workers:
                        break
                    time.sleep(0.05)
                self._workers = self.worker_pids()
                return self
            self.stop()
        tail = (self.run / "eggproxy.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"eggproxy serve did not start:\n{tail}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """Granian workers: children of the main process, not multiprocessing helpers."""
        return granian_workers(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, self._workers or self.worker_pids(), signal.SIGTERM)
            self.proc = None
            self._workers = []


@dataclass
class Nginx:
    """nginx serving the cache directory statically, as a subprocess in the foreground."""

    cache: Path
    run: Path
    workers: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    name: str = "nginx"
    access_log: Path | None = None  # off unless given (bench.herd counts upstream GETs)

    def config(self) -> str:
        built = subprocess.run(
            ["nginx", "-V"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
        temp = [f"client_body_temp_path {self.run}/client_body;"]
        for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
            if f"--http-{module}-temp-path" in built:
                temp.append(f"{module}_temp_path {self.run}/{module};")
        user = nginx_user()
        values = {
            "USER": user,
            "WORKERS": str(self.workers),
            "RUN": str(self.run),
            "TEMP_PATHS": "\n    ".join(temp),
            "PORT": str(self.port),
            "CACHE": str(self.cache),
            "ACCESS_LOG": f"access_log {self.access_log or 'off'};",
        }
        return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], NGINX_TEMPLATE.read_text())

    def start(self) -> Nginx:
        for _attempt in range(3):
            self.port = free_port()
            conf = self.run / "nginx.conf"
            conf.write_text(self.config())
            with (self.run / "nginx.out").open("ab") as out:
                self.proc = subprocess.Popen(
                    ["nginx", "-p", str(self.run), "-c", str(conf), "-e", str(self.run / "e.log")],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                )
            if wait_ready(self.port, self.running):
                return self
            self.stop()
        tail = (self.run / "nginx.out").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"nginx did not start:\n{tail}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, children(self.proc.pid), signal.SIGTERM)
            self.proc = None


def nginx_user() -> str:
    """nginx's ``user`` line when run as root: workers read files as the user that wrote them."""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""


@contextlib.contextmanager
def running(server: Eggproxy | Nginx) -> Iterator[Eggproxy | Nginx]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- tools -----------------------------------------------------------------------------------


def ensure_tools(install: bool) -> list[str]:
    """Install nginx and wrk with apt-get if missing (as root); return what is still missing."""
    wanted = {"nginx": "nginx-light", "wrk": "wrk"}
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(cmd, env=env, timeout=600, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, timeout=600, check=False)
            subprocess.run(cmd, env=env, timeout=600, check=False)
    still = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if still:
        print(
            f"missing: {', '.join(still)}; install them with "
            f"`sudo apt-get install -y {' '.join(still)}` and run again",
            file=sys.stderr,
        )
    return still


def find_uv() -> str | None:
    beside = Path(sys.executable).with_name("uv")
    return str(beside) if beside.exists() else shutil.which("uv")


# --- fixtures --------------------------------------------------------------------------------


def package_name(i: int) -> str:
    return f"benchpkg-{i:02d}"


def build_fixtures(files: Path, packages: int, page_files: int) -> list[str]:
    """Wheels of ``benchpkg-01..NN`` (two versions each, some depending on the next one)."""
    for i in range(1, packages + 1):
        name = package_name(i)
        module = name.replace("-", "_")
        requires = [f"{package_name(i + 1)}>=1.0"] if i % 3 != 0 and i < packages else []
        for version in ("1.0", "1.1"):
            body = f'__version__ = "{version}"\n'.encode()
            build_wheel(files, name, version, {f"{module}/__init__.py": body}, requires)
    # A project page of a realistic size: many releases listed.
    page = files / PAGE_PROJECT
    page.mkdir(parents=True, exist_ok=True)
    for n in range(page_files):
        (page / f"{PAGE_PROJECT}-1.{n}.tar.gz").write_bytes(os.urandom(64))
    return [package_name(i) for i in range(1, packages + 1)]


# --- 1. requests per second ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str
    path: str
    accept: str


def wrk(port: int, target: Target, args: argparse.Namespace, duration: int) -> float:
    """Requests/s that wrk measured (bounded by ``duration`` plus a margin)."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s"]
    cmd += ["--timeout", "5s", "-H", f"Accept: {target.accept}"]
    cmd.append(f"http://127.0.0.1:{port}{target.path}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    out = done.stdout + done.stderr
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {cmd}\n{out}")
    for problem in ("Non-2xx or 3xx responses", "Socket errors"):
        if problem in out:
            log(f"warning: wrk reported {problem.lower()} for {target.label}:\n{out}")
    return float(match.group(1))


def stat_cpu_seconds(stat: Path) -> float:
    """User plus system CPU seconds of a ``/proc/.../stat`` file (0 once the task is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # proc(5)
    return 0.0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU seconds the processes used so far (gone ones count 0)."""
    return sum(stat_cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in pids)


def server_pids(server: Eggproxy | Nginx) -> list[int]:
    if server.proc is None:
        return []
    if isinstance(server, Eggproxy):
        return [server.proc.pid, *server.worker_pids()]
    return [server.proc.pid, *children(server.proc.pid)]


def check_same(servers: Sequence[Eggproxy | Nginx], targets: Sequence[Target]) -> None:
    """Every server answers every target with the same body, and the right page format."""
    for target in targets:
        bodies = {}
        for server in servers:
            status, headers, body = get(server.port, target.path, target.accept)
            if status != 200:
                raise RuntimeError(f"{server.name} answered {status} to {target.path}")
            if target.accept == JSON_ACCEPT and not headers.get("content-type", "").startswith(
                JSON_ACCEPT
            ):
                raise RuntimeError(f"{server.name}: {target.path} is not JSON: {headers}")
            bodies[server.name] = body
        if len(set(bodies.values())) != 1:
            raise RuntimeError(f"servers disagree on {target.path}")


def bench_rps(
    upstream: Upstream, cache: Path, run: Path, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """Requests/s per target per server, ``--rounds`` times each.

    The three servers run side by side (idle while another is measured) and take turns
    within each round, so that a slow moment of the machine does not favour one of them.
    """
    upstream.add_file(FILE_PROJECT, FILE_NAME, args.file_kb * 1024)
    targets = [
        Target("page HTML", f"{PREFIX}{PAGE_PROJECT}/", HTML_ACCEPT),
        Target("page JSON", f"{PREFIX}{PAGE_PROJECT}/", JSON_ACCEPT),
        Target(f"file {args.file_kb} KiB", f"{PREFIX}{FILE_PROJECT}/{FILE_NAME}", "*/*"),
    ]
    results: dict[str, dict[str, list[float]]] = {t.label: {} for t in targets}
    results.update({f"{t.label} {CPU}": {} for t in targets})
    servers: list[Eggproxy | Nginx] = [
        Eggproxy(upstream.url, cache, run, args.workers),
        Eggproxy(upstream.url, cache, run, args.workers, access_log=False),
        Nginx(cache, run, args.workers),
    ]
    if args.reference_src is not None:
        # Before/after in one run: the same measurement of another source tree, log on.
        reference = Eggproxy(upstream.url, cache, run, args.workers, label=REFERENCE)
        reference.source = args.reference_src
        servers.insert(1, reference)
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(running(server))
        # Warm the cache: the pages and the file are fetched once, then served as hits.
        for target in targets:
            status, _headers, body = get(servers[0].port, target.path, target.accept, timeout=60)
            if status != 200:
                raise RuntimeError(f"warming {target.path}: {status} {body[:200]!r}")
        check_same(servers, targets)
        sizes = ", ".join(
            f"{t.label}: {len(get(servers[0].port, t.path, t.accept)[2])} bytes" for t in targets
        )
        log(f"targets: {sizes}")
        for target in targets:
            if args.warmup:
                for server in servers:
                    wrk(server.port, target, args, args.warmup)
            for _round in range(args.rounds):
                for server in servers:
                    pids = server_pids(server)
                    cpu = cpu_seconds(pids)
                    rps = wrk(server.port, target, args, args.duration)
                    # CPU per request: steadier than req/s when other work shares the cores.
                    per = (cpu_seconds(pids) - cpu) / max(1.0, rps * args.duration) * 1e6
                    results[target.label].setdefault(server.name, []).append(rps)
                    results[f"{target.label} {CPU}"].setdefault(server.name, []).append(per)
                    log(f"{server.name:26} {target.label:14} {rps:10.0f} req/s {per:7.1f} {CPU}")
    return results


# --- 1b. metrics on and off ------------------------------------------------------------------

METRICS_FILE_KB: Final = 64  # a small file: sent from memory, where bookkeeping shows most


def bench_metrics(
    upstream: Upstream, cache: Path, run: Path, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """Hit requests/s with metrics off, on, and on with the last-served bookkeeping of a limit.

    Side by side in one run, taking turns in each round, like :func:`bench_rps`; the
    access log is off in all three so that only the counting differs.
    """
    name = "metrics-1.0.tar.gz"
    upstream.add_file(FILE_PROJECT, name, METRICS_FILE_KB * 1024)
    targets = [
        Target("page JSON", f"{PREFIX}{PAGE_PROJECT}/", JSON_ACCEPT),
        Target(f"file {METRICS_FILE_KB} KiB", f"{PREFIX}{FILE_PROJECT}/{name}", "*/*"),
    ]
    servers: list[Eggproxy | Nginx] = [
        Eggproxy(
            upstream.url,
            cache,
            run,
            args.workers,
            False,
            settings="metrics = off\n",
            label="metrics off",
        ),
        Eggproxy(upstream.url, cache, run, args.workers, False, label="metrics on"),
        Eggproxy(
            upstream.url,
            cache,
            run,
            args.workers,
            False,
            settings=f"max_cache_size = 100G\nmetrics_dir = {run / 'metrics-limit'}\n",
            label="metrics on + limit",
        ),
    ]
    results: dict[str, dict[str, list[float]]] = {t.label: {} for t in targets}
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(running(server))
        for target in targets:
            status, _headers, body = get(servers[0].port, target.path, target.accept, timeout=60)
            if status != 200:
                raise RuntimeError(f"warming {target.path}: {status} {body[:200]!r}")
        check_same(servers, targets)
        for target in targets:
            if args.warmup:
                for server in servers:
                    wrk(server.port, target, args, args.warmup)
            for turn in range(args.rounds):
                # Each round starts with another server: no one always runs second.
                for server in servers[turn % 3 :] + servers[: turn % 3]:
                    rps = wrk(server.port, target, args, args.duration)
                    results[target.label].setdefault(server.name, []).append(rps)
                    log(f"{server.name:26} {target.label:14} {rps:10.0f} req/s")
        # The counts are right, too: every request above was counted as a hit.
        status, _headers, body = get(servers[1].port, "/metrics", "*/*")
        hits = re.findall(
            rb'eggproxy_requests_total\{kind="(\w+)",outcome="hit"\} ([\d.e+]+)', body
        )
        log(f"metrics on counted hits: {dict((k.decode(), float(v)) for k, v in hits)}")
    for label, settings in (
        ("metrics off", {"metrics": "off"}),
        ("metrics on", {}),
        ("metrics on + limit", {"max_cache_size": "100G"}),
    ):
        cost = served_cost(cache, upstream.url, settings)
        results.setdefault("Proxy.served per hit (us)", {})[label] = [cost]
        log(f"{label:26} Proxy.served   {cost:10.3f} us per hit")
    return results


def served_cost(cache: Path, upstream_url: str, settings: dict[str, str]) -> float:
    """Microseconds one ``Proxy.served`` call of a hit costs, in this process (best of 5)."""
    from eggproxy.config import config_from_mapping
    from eggproxy.proxy import Proxy
    from eggproxy.routes import FileRoute, ProjectRoute

    config = config_from_mapping(
        {"cache_dir": str(cache), "index": upstream_url, **settings}, environ={}
    )
    with tempfile.TemporaryDirectory() as directory:
        proxy = Proxy(config, metrics_dir=Path(directory))
        try:
            page = ProjectRoute(PAGE_PROJECT)  # type: ignore[arg-type]
            file = FileRoute(FILE_PROJECT, FILE_NAME)  # type: ignore[arg-type]
            n, best = 100_000, float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for _i in range(n // 2):
                    proxy.served(page, "hit", 4000)
                    proxy.served(file, "hit", 65536)
                best = min(best, time.perf_counter() - started)
        finally:
            proxy.close()
    return best / n * 1e6


def report_metrics(results: dict[str, dict[str, list[float]]]) -> None:
    rows = []
    for label, by in results.items():
        off = statistics.median(by["metrics off"])
        on = statistics.median(by["metrics on"])
        limit = statistics.median(by["metrics on + limit"])
        if label.startswith("Proxy.served"):
            rows.append([label, f"{off:.3f}", f"{on:.3f}", f"{limit:.3f}", "", ""])
            continue
        rows.append(
            [
                label,
                f"{off:.0f}",
                f"{on:.0f}",
                f"{limit:.0f}",
                f"{on / off:.3f}",
                f"{limit / off:.3f}",
            ]
        )
    header = ["target", "off", "on", "on + limit", "on/off", "limit/off"]
    print(table("Hit requests/s with metrics (medians; access log off)", header, rows))


# --- 2. memory -------------------------------------------------------------------------------


@dataclass
class MemoryResult:
    label: str
    baseline: int  # VmRSS after start and one page request, max over workers
    peak: int  # VmHWM after the download, max over workers
    sampled: int  # highest VmRSS seen while sampling, max over workers
    seconds: float
    size: int


DOWNLOAD_SCRIPT: Final = """
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
conn.request("GET", sys.argv[2])
response = conn.getresponse()
if response.status != 200:
    sys.exit(f"GET {sys.argv[2]}: {response.status}")
received = 0
while data := response.read(1 << 20):
    received += len(data)
print(received)
"""


def download_command(port: int, path: str, max_time: int = 600) -> list[str]:
    """A client in a process of its own (curl if there is one): it shares no GIL with us."""
    if shutil.which("curl"):
        return [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            str(max_time),
            "--output",
            os.devnull,
            "--write-out",
            "%{size_download}",
            f"http://127.0.0.1:{port}{path}",
        ]
    return [sys.executable, "-c", DOWNLOAD_SCRIPT, str(port), path]


def measure_download(server: Eggproxy, label: str, path: str, size: int) -> MemoryResult:
    """Serve ``path`` once; sample the workers' memory (every 20 ms) meanwhile."""
    workers = server.worker_pids()
    baseline = max(proc_kb(pid, "VmRSS") for pid in workers)
    sampled = baseline
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        client = subprocess.Popen(
            download_command(server.port, path), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 600
            while client.poll() is None and time.monotonic() < deadline:
                sampled = max(sampled, *(proc_kb(pid, "VmRSS") for pid in workers))
                time.sleep(0.02)
            seconds = time.perf_counter() - started
        finally:
            if client.poll() is None:
                client.kill()
            client.wait(10)
        out.seek(0)
        output = out.read().decode(errors="replace").strip()
    if client.returncode != 0 or output != str(size):
        raise RuntimeError(f"{label}: client exited {client.returncode}: {output[-500:]}")
    peak = max(proc_kb(pid, "VmHWM") for pid in workers)
    return MemoryResult(label, baseline, peak, sampled, seconds, size)


def bench_memory(
    upstream: Upstream, cache: Path, run: Path, args: argparse.Namespace
) -> list[MemoryResult]:
    size = args.big_mb * 2**20
    log(f"writing a {args.big_mb} MiB file for the upstream")
    upstream.add_file(BIG_PROJECT, BIG_NAME, size)
    page = f"{PREFIX}{BIG_PROJECT}/"
    path = f"{PREFIX}{BIG_PROJECT}/{BIG_NAME}"
    results = []
    for label in ("miss (streamed from upstream)", "hit (from the cache)"):
        # A fresh server per case, so that VmHWM is the peak of that case alone.
        server = Eggproxy(upstream.url, cache, run, args.workers)
        with running(server):
            # Baseline after one page request (the page is fetched on the first run).
            if get(server.port, page, JSON_ACCEPT, timeout=60)[0] != 200:
                raise RuntimeError(f"page {page} not served")
            time.sleep(0.2)
            results.append(measure_download(server, label, path, size))
        log(f"{label}: peak {mib(results[-1].peak)}")
    if not (cache / BIG_PROJECT / BIG_NAME).exists():
        raise RuntimeError("the big file was not cached by the miss")
    (cache / BIG_PROJECT / BIG_NAME).unlink()  # no need to keep it on disk
    return results


# --- 3. installs -----------------------------------------------------------------------------


def make_venv(template: Path, dest: Path) -> Path:
    """A fresh venv: a copy of the template (whose pip came from ensurepip, offline)."""
    shutil.copytree(template, dest, symlinks=True)
    return dest / "bin" / "python"


def install_command(client: str, uv: str | None, python: Path, url: str) -> list[str]:
    if client == "uv":
        assert uv is not None
        return [
            uv,
            "pip",
            "install",
            "--no-cache",
            "--quiet",
            "--python",
            str(python),
            "--index-url",
            url,
        ]
    return [str(python), "-m", "pip", "install", "--no-cache-dir", "--quiet", "--index-url", url]


def timed_install(
    client: str, uv: str | None, template: Path, venvs: Path, url: str, names: Sequence[str]
) -> float:
    dest = Path(tempfile.mkdtemp(dir=venvs))
    try:
        python = make_venv(template, dest / "venv")
        cmd = [*install_command(client, uv, python, url), *names]
        started = time.perf_counter()
        done = subprocess.run(
            cmd,
            env=installer_env(),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{done.stdout}\n{done.stderr}")
        installed = list((dest / "venv").glob("lib/python*/site-packages/benchpkg_*.dist-info"))
        if len(installed) != len(names):
            raise RuntimeError(f"{client}: {len(installed)} of {len(names)} packages installed")
        return seconds
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def bench_installs(
    upstream: Upstream, cache: Path, run: Path, names: Sequence[str], args: argparse.Namespace
) -> tuple[dict[str, dict[str, list[float]]], dict[str, float]]:
    """Median-worthy times of warm installs per client and server; and the cold one."""
    uv = find_uv()
    clients = ["uv", "pip"] if uv else ["pip"]
    if not uv:
        log("uv not found: skipping uv installs (pip install uv)")
    venvs = run / "venvs"
    venvs.mkdir()
    template = venvs / "template"
    log("creating the template venv (python -m venv, with pip)")
    subprocess.run(
        [sys.executable, "-m", "venv", str(template)], env=clean_env(), check=True, timeout=300
    )
    results: dict[str, dict[str, list[float]]] = {c: {} for c in clients}
    cold: dict[str, float] = {}
    eggproxy = Eggproxy(upstream.url, cache, run, args.workers)
    nginx = Nginx(cache, run, args.workers)
    with running(eggproxy), running(nginx):
        servers: list[tuple[str, str]] = [
            ("eggproxy", f"http://127.0.0.1:{eggproxy.port}{PREFIX}"),
            ("nginx", f"http://127.0.0.1:{nginx.port}{PREFIX}"),
        ]
        # Warm: eggproxy fetches the pages, metadata and wheels once; then one untimed run per
        # client and server warms the page cache of the OS and the servers' own caches alike.
        for client in clients:
            for name, url in servers:
                seconds = timed_install(client, uv, template, venvs, url, names)
                if not cold:
                    cold[f"{client} via {name}"] = seconds
                    log(f"cold {client} install via {name} (fills the cache): {seconds:.3f}s")
        # Rounds take turns between the servers, so that a slow moment of the machine
        # does not favour one of them.
        for _round in range(args.repeat):
            for client in clients:
                for name, url in servers:
                    seconds = timed_install(client, uv, template, venvs, url, names)
                    results[client].setdefault(name, []).append(seconds)
                    log(f"{client:4} via {name:9} {seconds:.3f}s")
    return results, cold


# --- report ----------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    eggproxy: str
    nginx: str
    ratio: str
    target: str
    verdict: str


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    for r in rows:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells))
    out.append(line)
    return "\n".join(out)


def report(
    args: argparse.Namespace,
    rps: dict[str, dict[str, list[float]]] | None,
    memory: list[MemoryResult] | None,
    installs: tuple[dict[str, dict[str, list[float]]], dict[str, float]] | None,
) -> None:
    print()
    print(
        f"eggproxy benchmark: workers={args.workers} (nginx worker_processes={args.workers}), "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    before = " ".join(f"{x:.2f}" for x in args.load_before)
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before: {before}; after: {after} (other load makes numbers noisy)")
    summary: list[Row] = []
    if rps:
        rows = []
        for label, by in rps.items():
            n = statistics.median(by["nginx"])
            on = statistics.median(by["eggproxy"])
            off = statistics.median(by["eggproxy --no-access-log"])
            if label.endswith(CPU):  # server CPU per request: the ratio is nginx / eggproxy
                row = [
                    label,
                    f"{on:.1f}",
                    f"{off:.1f}",
                    f"{n:.1f}",
                    f"{n / on:.2f}",
                    f"{n / off:.2f}",
                ]
                if REFERENCE in by:
                    ref = statistics.median(by[REFERENCE])
                    row += [f"{ref:.1f}", f"{n / ref:.2f}"]
                rows.append(row)
                continue
            row = [label, f"{on:.0f}", f"{off:.0f}", f"{n:.0f}", f"{on / n:.2f}", f"{off / n:.2f}"]
            measured = [("log on", on), ("log off", off)]
            if REFERENCE in by:
                ref = statistics.median(by[REFERENCE])
                row += [f"{ref:.0f}", f"{ref / n:.2f}"]
                measured.append(("reference", ref))
            rows.append(row)
            goal = FILE_TARGET if label.startswith("file") else PAGE_TARGET
            for name, value in measured:
                summary.append(
                    Row(
                        f"req/s {label} ({name})",
                        f"{value:.0f}",
                        f"{n:.0f}",
                        f"{value / n:.2f}",
                        f">= {goal:.2f}",
                        "ok" if value / n >= goal else "BELOW",
                    )
                )
        print()
        print(
            table(
                f"1. Requests/s of cached hits, median of {args.rounds} rounds (higher is better); "
                f"{CPU}: CPU of the server's processes per request (ratio: nginx / eggproxy)",
                ["target", "eggproxy", "eggproxy no-log", "nginx", "ratio", "ratio no-log"]
                + (["reference", "ratio ref"] if args.reference_src is not None else []),
                rows,
            )
        )
    if memory:
        rows = [
            [
                m.label,
                mib(m.baseline),
                mib(m.sampled),
                mib(m.peak),
                mib(m.peak - m.baseline),
                f"{m.seconds:.2f}",
                f"{m.size / 2**20 / m.seconds:.0f}",
            ]
            for m in memory
        ]
        print()
        print(
            table(
                f"2. eggproxy worker memory serving a {args.big_mb} MiB file "
                "(max over workers; fresh server per case)",
                [
                    "case",
                    "baseline RSS",
                    "sampled max RSS",
                    "peak (VmHWM)",
                    "peak - baseline",
                    "seconds",
                    "MiB/s",
                ],
                rows,
            )
        )
        for m in memory:
            growth = m.peak - m.baseline
            summary.append(
                Row(
                    f"worker peak RSS, {m.label}",
                    mib(m.peak),
                    "-",
                    "-",
                    "growth < 64 MiB",
                    "ok" if growth < 64 * 2**20 else "HIGH",
                )
            )
    if installs:
        rows = []
        for client, runs in installs[0].items():
            e, n = statistics.median(runs["eggproxy"]), statistics.median(runs["nginx"])
            rows.append(
                [
                    f"{client} install",
                    f"{e:.3f}",
                    f"{n:.3f}",
                    f"{e / n:.2f}",
                    " ".join(f"{t:.2f}" for t in runs["eggproxy"]),
                    " ".join(f"{t:.2f}" for t in runs["nginx"]),
                ]
            )
            target = "<= 1.20" if client == "uv" else "-"
            verdict = ("ok" if e / n <= 1.2 else "ABOVE") if client == "uv" else "-"
            summary.append(
                Row(
                    f"{client} install of {args.packages} packages, median s",
                    f"{e:.3f}",
                    f"{n:.3f}",
                    f"{e / n:.2f}",
                    target,
                    verdict,
                )
            )
        print()
        print(
            table(
                f"3. Warm installs of {args.packages} packages, median of {args.repeat} "
                "(seconds, lower is better; ratio = eggproxy/nginx)",
                ["client", "eggproxy", "nginx", "ratio", "eggproxy runs", "nginx runs"],
                rows,
            )
        )
        for what, seconds in installs[1].items():
            print(f"cold install (the first, {what}, fills the cache): {seconds:.3f} s")
    print()
    print(
        table(
            "Summary (ratio = eggproxy / nginx)",
            ["measure", "eggproxy", "nginx", "ratio", "target", "verdict"],
            [[r.what, r.eggproxy, r.nginx, r.ratio, r.target, r.verdict] for r in summary],
        )
    )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark eggproxy serve against nginx over the same cache directory."
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="eggproxy --workers and nginx worker_processes (default: 1)",
    )
    parser.add_argument(
        "--duration", type=int, default=3, help="seconds of each wrk measurement (default: 3)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="seconds of the wrk run before each measurement (default: 1)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="wrk measurements per target and server (default: 3)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default: 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default: 1)")
    parser.add_argument(
        "--file-kb",
        type=int,
        default=1024,
        help="size of the file of the requests/s test (default: 1024 KiB)",
    )
    parser.add_argument(
        "--page-files",
        type=int,
        default=100,
        help="files listed on the page of the requests/s test (default: 100)",
    )
    parser.add_argument(
        "--big-mb",
        type=int,
        default=512,
        help="size of the file of the memory test (default: 512 MiB)",
    )
    parser.add_argument(
        "--packages",
        type=int,
        default=30,
        help="packages installed in the install test (default: 30)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed installs per client and server (default: 3)"
    )
    parser.add_argument(
        "--only",
        choices=["rps", "metrics", "memory", "install"],
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    parser.add_argument(
        "--reference-src",
        type=Path,
        help="also measure (requests/s) the eggproxy of this source directory, e.g. a "
        "'git archive' of main's src/, side by side: before and after in one run",
    )
    parser.add_argument(
        "--no-apt", action="store_true", help="do not apt-get install missing nginx-light/wrk"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, cache, nginx.conf)"
    )
    args = parser.parse_args(argv)
    for name in (
        "workers",
        "connections",
        "threads",
        "file_kb",
        "page_files",
        "big_mb",
        "packages",
        "repeat",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600], --warmup in [0, 60]")
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.only or ["rps", "metrics", "memory", "install"])
    if ensure_tools(not args.no_apt):
        return 2
    started = time.monotonic()
    args.load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="eggproxy-bench-"))
    root.chmod(0o755)  # nginx workers may run as another user
    upstream: Upstream | None = None
    rps = memory = installs = metrics = None
    try:
        files, cache, run = root / "upstream", root / "cache", root / "run"
        for d in (files, cache, run):
            d.mkdir()
        names = build_fixtures(files, args.packages, args.page_files)
        upstream = Upstream(files, fmt="json")
        log(f"upstream double at {upstream.url}; work directory {root}")
        if "rps" in parts:
            rps = bench_rps(upstream, cache, run, args)
        if "metrics" in parts:
            metrics = bench_metrics(upstream, cache, run, args)
        if "memory" in parts:
            memory = bench_memory(upstream, cache, run, args)
        if "install" in parts:
            installs = bench_installs(upstream, cache, run, names, args)
    finally:
        if upstream is not None:
            upstream.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(args, rps, memory, installs)
    if metrics:
        report_metrics(metrics)
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
