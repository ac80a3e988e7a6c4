"""``eggproxy serve``: run the standalone server on granian.

The main process checks the configuration (refusing an upstream that is this
eggproxy itself), prepares the cache directory (cleaning partial files a
crash left), makes sure the address is free (:mod:`.listen`) and starts
granian, which runs
``--workers`` processes.  Each worker builds its :class:`~eggproxy.standalone.app.App`
from the same configuration file and command-line flags, handed over in an
environment variable (the file's path, never its credentials).

Metrics: the main process empties the metrics directory (``metrics_dir``,
else ``<cache_dir>/.metrics``) and every worker writes its counts there
(prometheus-client's multiprocess mode), so any worker's ``/metrics`` tells
the totals.  A housekeeping thread in the main process drops the live gauges
of workers that died and, with ``max_cache_size``, evicts files every
``prune_interval`` seconds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from dataclasses import replace
from typing import Final

from eggproxy import __version__, logs, metrics
from eggproxy.config import Config, config_from_mapping, load_config, worker_processes
from eggproxy.cpus import available_cpus as cpus
from eggproxy.diskspace import CHECK_INTERVAL
from eggproxy.errors import CannotListen, ConfigError
from eggproxy.loops import self_source, self_source_message
from eggproxy.proxy import Proxy
from eggproxy.standalone.accesslog import AccessLog
from eggproxy.standalone.app import App
from eggproxy.standalone.listen import check_address

log = logging.getLogger("eggproxy")

ENV: Final = "EGGPROXY_SERVE_CONFIG"
# Bounded graceful stop: in-flight responses get this long after SIGTERM.
STOP_TIMEOUT: Final = 20
DEAD_WORKERS_INTERVAL: Final = 10.0  # seconds between looks for workers that died


def config_to_env(config: Config, overrides: dict[str, str]) -> str:
    """What a worker needs to rebuild ``config``: the file it came from and the flags.

    Credentials of sources stay in the file: they are not copied into the
    environment of the workers.
    """
    return json.dumps({"file": str(config.path) if config.path else None, "overrides": overrides})


def config_from_env(text: str) -> Config:
    data = json.loads(text)
    config = load_config(data["file"]) if data["file"] else config_from_mapping({})
    return config.with_overrides(**data["overrides"])


def app_from_environment() -> App:
    """Granian's factory: one :class:`App` per worker process."""
    logs.configure()
    config = config_from_env(os.environ[ENV])
    on = os.environ.get("EGGPROXY_ACCESS_LOG", "1") == "1"
    access = AccessLog(fmt=config.access_log) if on else None
    metrics_dir = config.metrics_path if config.metrics else None
    proxy = Proxy(config, metrics_dir=metrics_dir, spares=True)
    return App(config, proxy=proxy, access_log=access)


def _housekeeping(config: Config, proxy: Proxy, stop: threading.Event) -> None:
    """The main process's chores: forget dead workers' gauges, keep the cache limit."""
    next_prune = time.monotonic() + config.prune_interval
    step = min(config.prune_interval, DEAD_WORKERS_INTERVAL)
    while not stop.wait(step):
        try:
            if config.metrics:
                metrics.mark_dead(config.metrics_path)
            if config.max_cache_size is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + config.prune_interval
                proxy.prune()
        except Exception:  # never let a chore end the thread
            log.exception("housekeeping failed")


def serve(
    config: Config, *, overrides: dict[str, str] | None = None, access_log: bool = True
) -> int:
    """Start granian with ``config.workers`` processes; return when it stops."""
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    logs.configure()
    # The workers rebuild the configuration from the flags: they get the number.
    workers = config.workers if config.workers != "auto" else worker_processes("auto", cpus())
    config = replace(config, workers=workers)
    overrides = {**(overrides or {}), "workers": str(workers)}
    itself = self_source(config)
    if itself is not None:
        # Every miss would ask ourselves again, until the workers run out.
        raise ConfigError(self_source_message(config, itself))
    check_address(config.bind)
    # Before the cache is touched: a server refused for a running one changes nothing.
    try:
        owner = _prepare_metrics(config)
    except OSError as exc:
        # The cache first: a cache directory that cannot be written is named as such.
        Proxy(config).prepare()
        hint = "; put metrics_dir on a local file system" if exc.errno in _NO_LOCKS else ""
        raise ConfigError(f"cannot prepare it: {exc.strerror}{hint}", key="metrics_dir") from None
    try:
        Proxy(config).prepare()
    except BaseException:
        if owner >= 0:
            os.close(owner)
        raise
    proxy = Proxy(config, metrics_dir=config.metrics_path if config.metrics else None)
    watch_disk(proxy)
    stop = threading.Event()
    chores = threading.Thread(
        target=_housekeeping, args=(config, proxy, stop), name="eggproxy-housekeeping", daemon=True
    )
    chores.start()
    host, _, port = config.bind.rpartition(":")
    os.environ[ENV] = config_to_env(config, overrides)
    os.environ["EGGPROXY_ACCESS_LOG"] = "1" if access_log else "0"

    def serving() -> None:
        # Called by granian once its socket is bound: only then is it true.
        log.info(
            "eggproxy %s serving http://%s%s on %d worker(s); cache %s; sources %s",
            __version__,
            config.bind,
            config.prefix,
            workers,
            config.cache_dir,
            ", ".join(source.url or str(source.path) for source in config.effective_sources),
        )

    server = Server(
        "eggproxy.standalone.run:app_from_environment",
        address=host.strip("[]"),
        port=int(port),
        # ASGI, for backpressure on streamed misses (see eggproxy.standalone.app).
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        websockets=False,
        loop=Loops.auto,
        log_access=False,  # ours carries hit/miss/stale
        workers_kill_timeout=STOP_TIMEOUT,
    )
    server.on_startup(serving)
    try:
        server.serve()
    except OSError as exc:  # taken between our check and granian's bind
        raise CannotListen(config.bind, (exc.strerror or str(exc)).lower()) from None
    finally:
        stop.set()
        proxy.close()
        if owner >= 0:
            os.close(owner)
    return 0


_NO_LOCKS: Final = frozenset({errno.ENOLCK, errno.EOPNOTSUPP})


def _prepare_metrics(config: Config) -> int:
    """Hold the metrics folder and empty it; the descriptor holding it, -1 with metrics off.

    Counts of a previous run would be added to ours: start from zero.  Not those of
    a server still running on this machine and cache (:func:`metrics.claim_directory`):
    refused, with one line.  An ``OSError`` is the caller's to name.
    """
    if not config.metrics:
        return -1
    try:
        owner = metrics.claim_directory(config.metrics_path)
    except metrics.DirectoryInUse as exc:
        raise ConfigError(
            f"{exc}: give each server on one machine its own metrics_dir", key="metrics_dir"
        ) from None
    try:
        metrics.reset_directory(config.metrics_path)
        (config.metrics_path / "started").write_text(f"{time.time():.3f}\n")
    except BaseException:
        os.close(owner)
        raise
    return owner


def watch_disk(proxy: Proxy, interval: float = CHECK_INTERVAL) -> threading.Thread:
    """Warn now, and every ``interval`` while it stays so, when the cache disk is nearly full.

    A daemon thread of the main process: one warning per check, however many workers.
    """

    def check() -> None:
        space = proxy.disk_free()
        if space.low:
            log.warning(
                "cache disk nearly full: %s in %s; misses fail with 507 once it is full",
                space.line(),
                proxy.config.cache_dir,
            )

    def run() -> None:
        while not stop.wait(interval):
            try:
                check()
            except OSError as exc:
                log.warning("cannot check the cache disk: %s", exc)

    stop = threading.Event()
    check()
    thread = threading.Thread(target=run, name="eggproxy-disk", daemon=True)
    thread.start()
    return thread
