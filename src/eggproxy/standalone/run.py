"""``eggproxy serve``: run the standalone server on granian.

The main process checks the configuration, prepares the cache directory
(cleaning partial files a crash left) and starts granian, which runs
``--workers`` processes.  Each worker builds its :class:`~eggproxy.standalone.app.App`
from the same configuration file and command-line flags, handed over in an
environment variable (the file's path, never its credentials).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Final

from eggproxy import __version__, logs
from eggproxy.config import Config, config_from_mapping, load_config
from eggproxy.diskspace import CHECK_INTERVAL
from eggproxy.proxy import Proxy
from eggproxy.standalone.accesslog import AccessLog
from eggproxy.standalone.app import App

log = logging.getLogger("eggproxy")

ENV: Final = "EGGPROXY_SERVE_CONFIG"
# Bounded graceful stop: in-flight responses get this long after SIGTERM.
STOP_TIMEOUT: Final = 20


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
    access = AccessLog() if os.environ.get("EGGPROXY_ACCESS_LOG", "1") == "1" else None
    return App(config_from_env(os.environ[ENV]), access_log=access)


def serve(
    config: Config, *, overrides: dict[str, str] | None = None, access_log: bool = True
) -> int:
    """Start granian with ``config.workers`` processes; return when it stops."""
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    logs.configure()
    proxy = Proxy(config)
    proxy.prepare()
    watch_disk(proxy)
    host, _, port = config.bind.rpartition(":")
    os.environ[ENV] = config_to_env(config, overrides or {})
    os.environ["EGGPROXY_ACCESS_LOG"] = "1" if access_log else "0"
    log.info(
        "eggproxy %s serving http://%s%s on %d worker(s); cache %s; sources %s",
        __version__,
        config.bind,
        config.prefix,
        config.workers,
        config.cache_dir,
        ", ".join(source.url or str(source.path) for source in config.effective_sources),
    )
    server = Server(
        "eggproxy.standalone.run:app_from_environment",
        address=host.strip("[]"),
        port=int(port),
        # ASGI, for backpressure on streamed misses (see eggproxy.standalone.app).
        interface=Interfaces.ASGI,
        workers=config.workers,
        factory=True,
        websockets=False,
        loop=Loops.auto,
        log_access=False,  # ours carries hit/miss/stale
        workers_kill_timeout=STOP_TIMEOUT,
    )
    server.serve()
    return 0


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
