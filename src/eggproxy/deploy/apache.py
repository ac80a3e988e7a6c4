"""The Apache virtual host for the current configuration (``eggproxy deploy apache``).

``apache/eggproxy.vhost`` is this rendering for the documented Debian layout (a test keeps
the two equal), and the integration harness runs Apache on this rendering, so what is
shipped, what is printed and what is tested are one file.

Three paths answer a request, and only the last one runs Python:

1. a cached file (``-f`` on the mapped file name): Apache's static handler;
2. a fresh page: ``mod_cache`` in its quick handler, from a copy it stored (in shared memory,
   or on disk for large pages) when eggproxy last answered, for as long as eggproxy's
   ``Cache-Control: max-age`` (the time left on ``index_ttl``) allows, one copy per
   ``Accept`` (eggproxy sends ``Vary: Accept``);
3. everything else (misses, stale pages, non-normalised names, errors): the mod_python fixup.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

from eggproxy.config import Config
from eggproxy.headers import FILE_TYPES, IMMUTABLE, METADATA_TYPE
from eggproxy.names import METADATA_SUFFIX

DEFAULT_SERVER_NAME: Final = "eggproxy.example.internal"
DEFAULT_VENV: Final = Path("/opt/eggproxy")
# Debian's cache_disk.conf root, which its apache-htcacheclean service prunes.
DEFAULT_CACHE_ROOT: Final = Path("/var/cache/apache2/mod_cache_disk")
# Largest page mod_cache keeps (bytes); the JSON page of a project with thousands of files
# runs to megabytes, and a page it will not keep is answered by Python every time.
MAX_PAGE_BYTES: Final = 64 * 2**20
# Shared memory for mod_cache's copies of pages (all children share it), and the largest
# page kept there; larger pages go to mod_cache_disk.
SHM_BYTES: Final = 32 * 2**20
MAX_SHM_PAGE_BYTES: Final = 2**20
# Modules the vhost uses, with the identifier ``<IfModule>`` knows them by.
MODULES: Final = {
    "python": "python_module",
    "alias": "alias_module",
    "authz_core": "authz_core_module",
    "dir": "dir_module",
    "mime": "mime_module",
    "headers": "headers_module",
    "env": "env_module",
    "cache": "cache_module",
    "cache_disk": "cache_disk_module",
    "cache_socache": "cache_socache_module",
    "socache_shmcb": "socache_shmcb_module",
}


class RenderError(ValueError):
    """A path or name that cannot be written into an Apache configuration file."""


def site_packages(venv: Path) -> Path:
    """The venv's site-packages (mod_python embeds the system Python the venv was made with)."""
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    if found:
        return found[-1]
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def running_venv() -> Path | None:
    """The venv this eggproxy runs from, if any."""
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else None


def _quoted(value: object) -> str:
    text = str(value)
    if any(c in text for c in '"\\\n\r') or not text:
        raise RenderError(f"cannot quote {text!r} in an Apache configuration")
    return f'"{text}"'


def _module_checks() -> str:
    lines = []
    for name, identifier in MODULES.items():
        lines += [
            f"<IfModule !{identifier}>",
            f'    Error "eggproxy needs mod_{name}: a2enmod {name}"',
            "</IfModule>",
        ]
    return "\n".join(lines)


def _file_types() -> str:
    """``ForceType``s for the types ``eggproxy serve`` sends (``eggproxy.headers``).

    One ``<FilesMatch>`` per type, not per suffix: each one is a regex run on every hit.
    """
    by_type: dict[str, list[str]] = {METADATA_TYPE: [METADATA_SUFFIX]}
    for suffix, content_type in FILE_TYPES.items():
        by_type.setdefault(content_type, []).append(suffix)
    lines = []
    for content_type, suffixes in by_type.items():
        pattern = "|".join(re.escape(suffix.lstrip(".")) for suffix in suffixes)
        lines += [
            f'        <FilesMatch "\\.(?:{pattern})$">',
            f"            ForceType {_quoted(content_type)}",
            "        </FilesMatch>",
        ]
    return "\n".join(lines)


def render_apache(
    config: Config,
    *,
    server_name: str = DEFAULT_SERVER_NAME,
    listen: str | None = None,
    venv: Path | None = None,
    cache_root: Path = DEFAULT_CACHE_ROOT,
) -> str:
    """The ``<VirtualHost>`` serving ``config``'s cache at its prefix through mod_python.

    ``listen`` (``HOST:PORT``) adds a ``Listen`` line and binds the vhost there; without it
    the vhost is ``*:80`` (Debian's ``ports.conf`` listens).  ``venv`` is where eggproxy is
    installed (default: the venv running this, else ``/opt/eggproxy``).  ``cache_root`` is
    mod_cache_disk's directory for its copies of fresh pages.
    """
    if not re.fullmatch(r"[A-Za-z0-9.-]+", server_name):
        raise RenderError(f"not a host name: {server_name!r}")
    if listen is not None and not re.fullmatch(r"[A-Za-z0-9.:\[\]*-]+:\d+", listen):
        raise RenderError(f"expected HOST:PORT, got {listen!r}")
    venv = venv or running_venv() or DEFAULT_VENV
    site = site_packages(venv)
    cache = config.cache_dir
    if config.path is None:
        # The vhost names the file mod_python loads; without one, eggproxy under Apache
        # would look up www-data's own defaults (another cache directory than the Alias).
        raise RenderError("no configuration file: Apache needs one (eggproxy -c FILE)")
    config_path = config.path.absolute()
    prefix = config.prefix.rstrip("/")  # "/simple"
    hidden = f"^{re.escape(str(cache))}/(?:.*/)?\\."
    python_path = _quoted(f"[{str(site)!r}] + sys.path")
    address = listen or "*:80"
    listen_line = f"Listen {listen}\n" if listen else ""
    return f"""\
# eggproxy behind Apache + mod_python: `eggproxy deploy apache` prints this file for the
# current configuration (Debian 12: /etc/apache2/sites-available/eggproxy.conf).
#
# Modules: a2enmod {" ".join(MODULES)}
# MPM: prefork (mod_python embeds one interpreter per process): a2dismod mpm_event &&
#      a2enmod mpm_prefork; see the README for StartServers / MinSpareServers.
#
# The cache directory is the URL space: {prefix}/<project>/<file> is the file
# {cache}/<project>/<file>.  Python runs only when Apache cannot answer alone:
# - a cached file is served by Apache's static handler (the <If "-f ..."> below);
# - a fresh page is served by mod_cache's quick handler from the copy it kept of eggproxy's
#   last answer, one copy per Accept header (Vary: Accept), for as long as eggproxy's
#   Cache-Control max-age (the time left on index_ttl) says;
# - misses, stale pages and non-normalised names reach the eggproxy fixup, which fills the
#   cache (or revalidates the page upstream) and hands the file back to the static handler.
{_module_checks()}

{listen_line}<VirtualHost {address}>
    ServerName {server_name}

    # cache_dir of {config_path}, at its prefix.
    Alias {prefix} {_quoted(cache)}

    # Fresh pages: mod_cache answers them in its quick handler, before any other phase runs
    # (no Python).  eggproxy decides how long a page is fresh, so a client's
    # "Cache-Control: max-age=0" (pip sends it) does not force a trip to Python.  No
    # CacheLock: it creates a lock file on every miss of mod_cache's store, i.e. on every
    # file hit, and eggproxy already answers a herd on a stale page with one revalidation
    # (the others get the stale page at once).  Files are marked no-cache below: they are
    # on disk already.
    CacheQuickHandler On
    # Pages up to {MAX_SHM_PAGE_BYTES // 1024} KiB are kept in shared memory (no file opened per
    # hit); larger ones on disk.
    CacheEnable socache {prefix}/
    CacheEnable disk {prefix}/
    CacheSocache {_quoted(f"shmcb:{cache_root}.shmcb({SHM_BYTES})")}
    CacheSocacheMaxSize {MAX_SHM_PAGE_BYTES}
    CacheRoot {_quoted(cache_root)}
    CacheIgnoreCacheControl On
    CacheLock Off
    CacheHeader On
    CacheMaxFileSize {MAX_PAGE_BYTES}

    # The eggproxy directives live here, not in a <Location>: mod_python handlers in a
    # <Location> stop Apache from mapping the URL to a file, and then no <Directory> or
    # <Files> section below (nor the -f test) would apply.
    <Directory {_quoted(cache)}>
        Options None
        AllowOverride None
        Require all granted
        # The fixup picks index.html or index.json by Accept (PEP 691).
        DirectoryIndex disabled
        # Whatever a file is called, Apache only ever sends its bytes.
        SetHandler None
        # Lock files, partial downloads and state are never served, nor the rendered pages
        # at their own names (a page's URL is its directory).
        <FilesMatch "^(?:\\.|index\\.(?:html|json)$)">
            Require all denied
        </FilesMatch>
        # The types eggproxy itself sends.
{_file_types()}

        # One interpreter per Apache process for every eggproxy request.
        PythonInterpreter eggproxy
        # mod_python embeds the system Python; the venv's packages must be readable by
        # www-data.
        PythonPath {python_path}
        PythonOption eggproxy.config {_quoted(config_path)}
        <If "-f %{{REQUEST_FILENAME}}">
            # A cached file: immutable, and Apache's alone.
            Header set Cache-Control {_quoted(IMMUTABLE)}
            SetEnv no-cache 1
        </If>
        <Else>
            PythonFixupHandler eggproxy.modpython::fixup
        </Else>
    </Directory>
    # Nor anything inside a dot directory (.locks/).
    <DirectoryMatch "{hidden}">
        Require all denied
    </DirectoryMatch>

    # eggproxy's own log lines go here too.  %{{eggproxy}}n is what the fixup did ("-": no
    # Python), %{{cache-status}}e what mod_cache did.
    LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\" \
eggproxy=%{{eggproxy}}n \\"%{{cache-status}}e\\"" eggproxy
    ErrorLog ${{APACHE_LOG_DIR}}/eggproxy-error.log
    CustomLog ${{APACHE_LOG_DIR}}/eggproxy-access.log eggproxy
</VirtualHost>
"""
