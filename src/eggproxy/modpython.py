"""Apache + mod_python front end: Apache serves every hit, Python fills misses.

Bind it to the cache directory's ``<Directory>`` as a *fixup* handler, for
requests whose file does not exist (see ``apache/eggproxy.vhost``; in a
``<Location>`` mod_python keeps Apache from mapping the URL to a file)::

    PythonFixupHandler eggproxy.modpython::fixup
    PythonOption eggproxy.config /etc/eggproxy/eggproxy.conf

For each request the handler checks the path, asks the core for the page or
file (a fresh cached one costs a ``stat``; a miss or a stale page is fetched
first, under the cache's file locks so that concurrent Apache processes
download a file once), then points ``req.filename``/``req.finfo`` at the file
on disk and lets Apache's own static handler send it, with Apache's ETag,
Range and sendfile.  This module imports ``mod_python`` and is only ever
imported by Apache.

With the vhost ``eggproxy deploy apache`` prints, Apache answers cached files
and fresh pages without calling this handler at all; it runs for misses, stale
pages and names to redirect.  It leaves what it did in the request note
``eggproxy`` (``%{eggproxy}n`` in a LogFormat), and its log lines go to the
ErrorLog of the virtual host that asked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mod_python import apache

from eggproxy import loops
from eggproxy.blocklist import CHECK_INTERVAL
from eggproxy.config import load_config
from eggproxy.errors import ConfigError, EggproxyError, LoopDetected
from eggproxy.headers import (
    IMMUTABLE,
    NO_STORE,
    error_cache_control,
    file_content_type,
    page_cache_control,
    stale_warning,
)
from eggproxy.mediatypes import choose_format
from eggproxy.proxy import Proxy
from eggproxy.replies import ALLOWED_METHODS, METHOD_NOT_ALLOWED, ErrorReply, error_reply
from eggproxy.routes import FileRoute, Redirect, RootRoute, Route, route

log = logging.getLogger("eggproxy")

_proxies: dict[str | None, Proxy] = {}
_proxies_lock = threading.Lock()

_LEVELS = {
    logging.DEBUG: apache.APLOG_DEBUG,
    logging.INFO: apache.APLOG_INFO,
    logging.WARNING: apache.APLOG_WARNING,
    logging.ERROR: apache.APLOG_ERR,
    logging.CRITICAL: apache.APLOG_CRIT,
}


# The server (virtual host) of the request this thread is answering: log lines go to its
# ErrorLog, not the main server's.
_current = threading.local()


class _ApacheLogHandler(logging.Handler):
    """Send eggproxy's log lines to the error log of the virtual host being served."""

    def emit(self, record: logging.LogRecord) -> None:
        level = _LEVELS.get(record.levelno, apache.APLOG_NOTICE)
        server = getattr(_current, "server", None)
        apache.log_error(f"eggproxy: {self.format(record)}", level, server)


def _proxy(req: Any) -> Proxy:
    """One core per configuration file per Apache process, made on first use."""
    path = req.get_options().get("eggproxy.config")
    with _proxies_lock:
        proxy = _proxies.get(path)
        if proxy is None:
            if not log.handlers:
                log.addHandler(_ApacheLogHandler())
                log.setLevel(logging.INFO)
            config = load_config(path)
            # Counted only with metrics_dir: Apache has no start-up hook to prepare a default.
            proxy = Proxy(config, metrics_dir=config.metrics_dir, spares=True)
            proxy.prepare()
            _proxies[path] = proxy
            if config.blocklist is not None:
                _watch_policy(proxy)
        return proxy


def _watch_policy(proxy: Proxy) -> None:
    """Apache answers cached files without Python: look at the blocklist from a thread.

    Every child that ever ran eggproxy looks every few seconds (cheap when nothing
    changed), so a new record withholds a cached file before its next request.
    """

    def watch() -> None:
        while True:
            time.sleep(CHECK_INTERVAL)
            try:
                proxy.check_policy()
            except Exception:  # never let the watcher die of one bad look
                log.exception("blocklist check failed")

    threading.Thread(target=watch, name="eggproxy-policy", daemon=True).start()


def _serve(req: Any, path: str, content_type: str) -> int:
    """Hand the file back to Apache's static handler."""
    req.filename = path
    # On a miss Apache mapped the URL before the project directory existed, so it
    # took the rest of the path for PATH_INFO; its static handler answers 404 to that.
    req.path_info = ""
    req.finfo = apache.stat(path, apache.APR_FINFO_MIN)
    req.content_type = content_type
    return int(apache.OK)


def fixup(req: Any) -> int:
    """``PythonFixupHandler``: fill the cache if needed, then let Apache serve."""
    _current.server = req.server
    try:
        return _fixup(req)
    finally:
        _current.server = None


def _fixup(req: Any) -> int:
    if req.method not in ("GET", "HEAD"):
        req.headers_out["Allow"] = ALLOWED_METHODS
        return _error(req, METHOD_NOT_ALLOWED)
    try:
        proxy = _proxy(req)
        via = req.headers_in.get("Via")
        if via is not None and proxy.is_loop(via):
            raise LoopDetected()
        loops.forward(via)  # this thread's upstream requests carry the client's Via first
        raw = req.unparsed_uri.split("?", 1)[0]
        if not raw.startswith("/"):  # absolute-form request target (RFC 9112, 3.2.2)
            raw = urlsplit(raw).path or "/"
        target = route(raw, proxy.config.prefix)
        if isinstance(target, Redirect):
            req.notes["eggproxy"] = "redirect"
            req.headers_out["Location"] = target.location
            return int(apache.HTTP_MOVED_PERMANENTLY)
        if isinstance(target, FileRoute):
            cached = proxy.cached_file(target.project, target.filename)
            try:
                path = cached[0] if cached else proxy.file(target.project, target.filename)
            except EggproxyError:
                _served(req, proxy, target, "error", None, None)
                raise
            _served(
                req, proxy, target, "hit" if cached else "miss", cached[1] if cached else None, path
            )
            req.notes["eggproxy"] = "file"
            # mod_cache keeps pages only: a file is on disk already, and Apache serves it.
            req.subprocess_env["no-cache"] = "1"
            req.headers_out["Cache-Control"] = IMMUTABLE
            return _serve(req, str(path), file_content_type(target.filename))
        fmt, content_type = choose_format(req.headers_in.get("Accept"))
        try:
            page = proxy.page(None if isinstance(target, RootRoute) else target.project, fmt)
        except EggproxyError:
            _served(req, proxy, target, "error", None, None)
            raise
        _served(req, proxy, target, page.outcome, page.stat, page.path)
        req.notes["eggproxy"] = page.outcome
        # PEP 691: one URL, two formats; shared caches must key on Accept.
        req.headers_out["Vary"] = "Accept"
        req.headers_out["Cache-Control"] = page_cache_control(
            page.max_age, proxy.config.stale_while_revalidate
        )
        if page.warning:
            req.headers_out["Warning"] = stale_warning(page.warning)
        if page.age is not None:
            req.headers_out["Age"] = str(page.age)
        return _serve(req, str(page.path), content_type)
    except ConfigError as exc:
        # For the administrator's eyes (the error log), not for every client.
        log.error("configuration error: %s", exc)
        return _error(req, ErrorReply(500, "eggproxy is misconfigured; see the error log"))
    except EggproxyError as exc:
        reply = error_reply(exc)
        known = _proxies.get(req.get_options().get("eggproxy.config"))
        ttl = known.config.negative_ttl if known is not None else 0
        req.headers_out["Cache-Control"] = error_cache_control(reply.status, ttl, exc)
        return _error(req, reply, exc.mark)
    except Exception:
        log.exception("unexpected error for %s", req.uri)
        return _error(req, ErrorReply(500, "internal error"))


def _served(
    req: Any,
    proxy: Proxy,
    target: Route,
    outcome: str,
    st: os.stat_result | None,
    path: Path | None,
) -> None:
    """Count the answer (the bytes of the file handed to Apache; 0 for HEAD)."""
    size = 0
    if path is not None and req.method != "HEAD":
        with contextlib.suppress(OSError):
            size = (st or path.stat()).st_size
    proxy.served(target, outcome, size)


def _error(req: Any, reply: ErrorReply, mark: str = "error") -> int:
    reply.log(log, req.method, req.unparsed_uri)
    # For the access log: LogFormat "... %{eggproxy}n" shows held / blocked.
    req.notes["eggproxy"] = mark
    req.status = reply.status
    if "Cache-Control" not in req.headers_out:
        req.headers_out["Cache-Control"] = NO_STORE  # errors are not kept by caches in front
    req.content_type = "text/plain; charset=utf-8"
    body = reply.body
    req.set_content_length(len(body))
    if req.method != "HEAD":
        req.write(body)
    return int(apache.DONE)
