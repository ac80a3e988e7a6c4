#!/usr/bin/env python3
"""The floor under the miss path: what one more hop costs before eggproxy does anything (issue 13).

Not a test: pytest never collects it.  Run::

    python -m bench.miss_floor [--packages 32] [--repeat 3] [--clients pip,uv] [--links fast]

The same cold ``pip download`` and ``uv pip install`` as ``bench.miss`` (fast link: loopback;
slow link: the double sleeps ``--page-delay`` before each page and ``--file-delay`` before each
file chunk; the upstream double is the static reference), through each of these in every round,
each round starting with the next one:

* **direct**: the upstream double itself;
* **nginx relay**: nginx (one worker) passing every request on to the double over kept-alive
  connections, storing nothing (``sub_filter`` points the pages' file links at itself): one
  more HTTP hop, in C;
* **python relay**: ``bench.relay`` under granian (one worker), a pass-through in a thread
  pool over one urllib3 pool, each body read whole: one more hop in Python, on the server
  eggproxy runs on, with one hand-off to a thread a request;
* **eggproxy cold**: ``eggproxy serve`` (one worker) on an empty cache.

Printed: the median seconds of ``--repeat`` rounds and the ratio to direct.  Read: the nginx
relay's ratio is what any proxy pays for the hop; the python relay's, what a proxy in Python
on granian pays before it parses, verifies or writes a byte; eggproxy's distance above it is
its own work.  Numbers: ``docs/decisions/0014-miss-path.md`` (round 8).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.integration.upstream import Upstream
from tests.support import children, free_port, granian_workers, stop_process

from bench.miss import TARGETS, serving, set_link, timed, workspace
from bench.run import clean_env, find_uv, log, nginx_user, wait_ready

RELAY_CONF: Final = """\
@USER@worker_processes 1;
daemon off;
pid @RUN@/relay.pid;
error_log @RUN@/relay-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path @RUN@/client_body;
    proxy_temp_path @RUN@/proxy;
    upstream double { server 127.0.0.1:@UPSTREAM_PORT@; keepalive 32; }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://double;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Accept-Encoding "";
            sub_filter "http://127.0.0.1:@UPSTREAM_PORT@" "http://127.0.0.1:@PORT@";
            sub_filter_once off;
            sub_filter_types application/vnd.pypi.simple.v1+json;
        }
    }
}
"""
KINDS: Final = ("direct", "nginx relay", "python relay", "eggproxy cold")


@dataclass
class Relay:
    """A pass-through server in front of the upstream double, as a subprocess."""

    kind: str  # "nginx relay" or "python relay"
    upstream_port: int
    run: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        for _attempt in range(3):
            self.port = free_port()
            with (self.run / "relay.out").open("ab") as out:
                self.proc = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=clean_env(self._env()),
                )
            if wait_ready(self.port, lambda: self.proc is not None and self.proc.poll() is None):
                return f"http://127.0.0.1:{self.port}/simple/"
            self.stop()
        tail = (self.run / "relay.out").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.kind} did not start:\n{tail}")

    def _command(self) -> list[str]:
        if self.kind == "nginx relay":
            values = {
                "@USER@": nginx_user(),
                "@RUN@": str(self.run),
                "@PORT@": str(self.port),
                "@UPSTREAM_PORT@": str(self.upstream_port),
            }
            conf = RELAY_CONF
            for key, value in values.items():
                conf = conf.replace(key, value)
            path = self.run / "relay.conf"
            path.write_text(conf)
            return ["nginx", "-p", str(self.run), "-c", str(path), "-e", str(self.run / "e.log")]
        granian = Path(sys.executable).with_name("granian")
        options = ["--interface", "asgi", "--workers", "1", "--no-ws", "--log-level", "warning"]
        where = ["--host", "127.0.0.1", "--port", str(self.port)]
        return [str(granian), *options, *where, "bench.relay:app"]

    def _env(self) -> dict[str, str]:
        repo = str(Path(__file__).resolve().parent.parent)
        return {"RELAY_UPSTREAM": f"http://127.0.0.1:{self.upstream_port}", "PYTHONPATH": repo}

    def stop(self) -> None:
        if self.proc is not None:
            extra = granian_workers(self.proc.pid) + children(self.proc.pid)
            stop_process(self.proc, extra, signal.SIGTERM)
            self.proc = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", default="pip,uv", help="pip,uv (default: both)")
    parser.add_argument("--links", default="fast", help="fast,slow (default: fast)")
    parser.add_argument("--page-delay", type=float, default=0.03, help="slow link, per page")
    parser.add_argument("--file-delay", type=float, default=0.03, help="slow link, per chunk")
    args = parser.parse_args()
    links = args.links.split(",")
    uv = find_uv()
    clients = [c for c in args.clients.split(",") if c != "uv" or uv]
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="eggproxy-bench-floor-") as tmp:
        root = Path(tmp)
        files, work, names, template = workspace(root, args.packages)
        with Upstream(files) as upstream:
            upstream_port = int(upstream.url.split(":")[2].split("/")[0])

            def through(kind: str, client: str, n: int) -> float:
                def run(url: str) -> float:
                    return timed(client, uv, template, work, url, names)

                if kind == "direct":
                    return run(upstream.url)
                if kind == "eggproxy cold":
                    cache = root / f"cache-{client}-{n}"
                    try:
                        with serving(upstream.url, cache, root, 1) as url:
                            return run(url)
                    finally:
                        shutil.rmtree(cache, ignore_errors=True)
                relay = Relay(kind, upstream_port, root)
                try:
                    return run(relay.start())
                finally:
                    relay.stop()

            for link in links:
                set_link(upstream, files, link, args.page_delay, args.file_delay)
                for client in clients:
                    for n in range(args.repeat + 1):  # the first round warms the OS: untimed
                        # Each round starts with another kind: no kind always follows the
                        # same one (a file system's cost moves with what was just removed).
                        order = KINDS[n % len(KINDS) :] + KINDS[: n % len(KINDS)]
                        took = {kind: through(kind, client, n) for kind in order}
                        cells = "  ".join(f"{k} {took[k]:.3f}s" for k in KINDS)
                        log(f"{link} {client:3} {cells}")
                        if n:
                            for kind, seconds in took.items():
                                times.setdefault(f"{link} {client} {kind}", []).append(seconds)
    print(f"\nmiss floor, {args.packages} packages, median of {args.repeat} (s; ratio to direct)")
    print(f"slow link: {args.page_delay:g}s per page, {args.file_delay:g}s per file chunk")
    for link in links:
        print(f"{link} link: the cold target is {TARGETS[f'{link} cold']}x")
        for client in clients:
            direct = statistics.median(times[f"{link} {client} direct"])
            cells = [f"direct {direct:6.3f}"]
            for kind in KINDS[1:]:
                median = statistics.median(times[f"{link} {client} {kind}"])
                cells.append(f"{kind} {median:6.3f} {median / direct:5.2f}x")
            print(f"  {client:3}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
