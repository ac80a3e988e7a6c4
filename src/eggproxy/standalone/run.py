"""``eggproxy serve``: run the standalone server on granian.

The main process checks the configuration (refusing an upstream that is this
eggproxy itself), prepares the cache directory (cleaning partial files a
crash left), makes sure the address is free (:mod:`.listen`) and starts
granian, which runs
``--workers`` processes.  Each worker builds its :class:`~eggproxy.standalone.app.App`
from the same configuration file and command-line flags, handed over in an
environment variable (the file's path, never its credentials).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Final

from eggproxy import __version__, logs
from eggproxy.config import Config, config_from_mapping, load_config
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
    itself = self_source(config)
    if itself is not None:
        # Every miss would ask ourselves again, until the workers run out.
        raise ConfigError(self_source_message(config, itself))
    Proxy(config).prepare()
    check_address(config.bind)
    host, _, port = config.bind.rpartition(":")
    os.environ[ENV] = config_to_env(config, overrides or {})
    os.environ["EGGPROXY_ACCESS_LOG"] = "1" if access_log else "0"

    def serving() -> None:
        # Called by granian once its socket is bound: only then is it true.
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
    server.on_startup(serving)
    try:
        server.serve()
    except OSError as exc:  # taken between our check and granian's bind
        raise CannotListen(config.bind, (exc.strerror or str(exc)).lower()) from None
    return 0
