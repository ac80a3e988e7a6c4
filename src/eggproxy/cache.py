"""The cache directory: its layout, atomic writes, locks and freshness.

The URL space is the disk, so a static web server can answer every hit::

    <cache_dir>/
      .eggproxy-layout        layout version ("1"); checked at start
      index.html index.json   the root page, both formats (mtime = fetch time)
      .state.json             where the root page came from (ETag, serial, URL)
      .policy                 fingerprint of the policy the pages were rendered with
      <project>/              PEP 503 normalised name
        index.html            PEP 503 page, relative links  (mtime = fetch time)
        index.json            PEP 691 page, relative links  (mtime = fetch time)
        .state.json           ETag, upstream serial, source URL of the page
        .upstream.json        the page as the upstream gave it (absolute URLs)
        <file>                a verified distribution file, immutable
        <file>.metadata       its PEP 658 core metadata, verified
        <file>.provenance     its PEP 740 provenance object (no declared hash)
        .withheld/<file>      a verified file no longer offered (removed upstream,
                              project quarantined): out of the URL space, kept
        .<name>.lock          its lock, only where record locks are missing (locks.py)
        .<name>.part          a download in progress (never served)
        .<name>.size          its expected size, for followers streaming it
        .<name>.failed        why the last attempt failed, for those who waited (failures.py)
      .locks/eggproxy.lock    every lock: one byte range per page or file (locks.py)
      .locks/                 the pages' .failed markers
      .negative/              names no source knows, for negative_ttl (negative.py)
      .spare/<host>-<pid>-<t>/  empty files and folders a running front end made ahead (spares.py)

Names starting with ``.`` are never a project or a file name, so a front
end refuses them.  The fetch time of a page is the modification time of its
rendered files: a page hit costs one ``stat``.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar

from eggproxy.errors import ConfigError, InsufficientStorage
from eggproxy.locks import Locks
from eggproxy.mediatypes import FORMATS, Format
from eggproxy.names import METADATA_SUFFIX, PROVENANCE_SUFFIX, NormalizedName
from eggproxy.spares import Spares, sweep

log = logging.getLogger(__name__)

T = TypeVar("T")

LAYOUT_VERSION: Final = "1"
LAYOUT_MARKER: Final = ".eggproxy-layout"
STATE: Final = ".state.json"
UPSTREAM: Final = ".upstream.json"
WITHHELD: Final = ".withheld"
POLICY: Final = ".policy"
PAGE_FILES: Final[dict[Format, str]] = {"html": "index.html", "json": "index.json"}
_DISK_FULL: Final = (errno.ENOSPC, errno.EDQUOT)
_LOCK_POLL: Final = 0.02  # seconds between tries of a lock taken with a time limit


class Freshness(enum.Enum):
    """How a cached page stands against its TTL."""

    FRESH = "fresh"
    STALE = "stale"
    MISSING = "missing"


@dataclass(frozen=True)
class PageState:
    """What we know about where a cached page came from."""

    url: str
    etag: str | None = None
    serial: int | None = None
    gone_since: float | None = None  # when the upstream first answered 404
    last_modified: str | None = None  # the upstream's Last-Modified (If-Modified-Since)
    # sha256 of the page as stored: equal bytes mean "unchanged" even when the
    # upstream sends no ETag, and the page is not rewritten.
    digest: str | None = None
    # When the page was last fetched or revalidated.  The pages' mtime is this,
    # or earlier when a held file is offered before the TTL runs out (policy).
    fetched: float | None = None
    # When the pages' mtime was set earlier than ``fetched``: the hold ending then.
    held_until: float | None = None

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PageState:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            url=str(raw["url"]),
            etag=raw.get("etag"),
            serial=raw.get("serial"),
            gone_since=raw.get("gone_since"),
            last_modified=raw.get("last_modified"),
            digest=raw.get("digest"),
            fetched=raw.get("fetched"),
            held_until=raw.get("held_until"),
        )


@dataclass(frozen=True)
class Snapshot:
    """A cached page's entry, read once per decision (a ``stat`` and two reads)."""

    mtime: float | None  # fetch time of the rendered pages; None: no page cached
    state: PageState | None  # where it came from (ETag, serial), if known
    has_upstream: bool  # the stored upstream copy exists (the root page has none)

    @property
    def cached(self) -> bool:
        return self.mtime is not None

    @property
    def complete(self) -> bool:
        """A page to serve and what revalidating it needs (a 304 keeps it)."""
        return self.mtime is not None and self.has_upstream


def freshness(mtime: float | None, ttl: float, now: float) -> Freshness:
    """Whether a page fetched at ``mtime`` is still fresh ``now``."""
    if mtime is None:
        return Freshness.MISSING
    return Freshness.FRESH if now - mtime < ttl else Freshness.STALE


class Cache:
    """A cache directory laid out as described in this module's docstring."""

    def __init__(self, root: Path, *, spares: bool = False) -> None:
        self.root = root
        self.locks = Locks(root)
        # Inodes made ahead of the misses that need them: long-running front ends only.
        self.spares = Spares(root, self.locks) if spares else None
        self._page_paths: dict[tuple[NormalizedName | None, Format], Path] = {}

    def prepare(self) -> None:
        """Create the tree (or check its layout version) and clean leftovers.

        A directory that cannot be created or written is a configuration
        error, said in one line at start rather than on every miss.
        """
        marker = self.root / LAYOUT_MARKER
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                version = marker.read_text().strip()
            except FileNotFoundError:
                version = LAYOUT_VERSION  # a new cache
            # Proves we may write here even when the marker exists already.
            write_atomic(marker, version.encode() + b"\n")
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise ConfigError(f"cannot write {self.root}: {reason}", key="cache_dir") from None
        if version != LAYOUT_VERSION:
            raise ConfigError(
                f"cache layout version {version or '(empty)'}, this eggproxy needs "
                f"{LAYOUT_VERSION}",
                key="cache_dir",
            )
        try:
            self.locks.prepare()
        except OSError as exc:  # not writable by us, or no record locks on this file system
            reason = (exc.strerror or type(exc).__name__).lower()
            raise ConfigError(f"cannot lock {self.locks.path}: {reason}", key="cache_dir") from None

    def close(self) -> None:
        """Remove this process's spare files (:mod:`eggproxy.spares`), if it kept any."""
        if self.spares is not None:
            self.spares.close()

    def clean_partials(self, older_than: float = 0.0) -> int:
        """Remove partial downloads and temporary files left by a crash; return how many.

        One pass over the project folders.  A partial download (or its size
        file) whose lock is held is a live download, and stays.  Temporary
        files go after an hour.  Per-entry lock files that an older eggproxy
        left (``.<name>.lock``) go too where record locks replace them
        (:mod:`eggproxy.locks`), when free; one an older eggproxy still holds
        keeps its download's files, and is said in the log.
        """
        removed = 0
        now = time.time()
        busy: list[Path] = []  # lock files an older eggproxy holds
        with os.scandir(self.root) as entries:
            folders = [
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
        for folder in (self.root, self.root / ".locks", *folders):
            try:
                with os.scandir(folder) as entries:
                    names = [e.name for e in entries if e.name.startswith(".")]
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:  # not ours to read (lost+found on a cache of its own)
                log.warning("left %s: %s", folder, exc.strerror or exc)
                continue
            for name in names:
                try:
                    removed += self._clean_leftover(folder / name, now, older_than, busy)
                except OSError as exc:  # an odd entry (a folder named .x.part): left as it is
                    log.warning("left %s: %s", folder / name, exc.strerror or exc)
        with contextlib.suppress(OSError):  # not counted: empty files, no data
            sweep(self.root, self.locks)
        if busy:
            log.warning(
                "an older eggproxy is using this cache (it holds %s): stop it; versions "
                "that lock differently do not see each other's locks",
                busy[0],
            )
        return removed

    def _clean_leftover(self, path: Path, now: float, older_than: float, busy: list[Path]) -> int:
        """Remove ``path`` if it is a leftover (see :meth:`clean_partials`); 1 if removed."""
        name = path.name
        entry = name[1:-5]  # of .<entry>.part, .<entry>.size, .<entry>.lock
        legacy = self.locks.record_locks  # lock files per entry are an older eggproxy's
        with contextlib.suppress(FileNotFoundError):
            if name.startswith(".tmp-"):
                if now - path.stat().st_mtime >= max(older_than, 3600):
                    path.unlink()
                    return 1
            elif name.endswith((".part", ".size")) and entry not in ("", ".", ".."):
                target = path.with_name(entry)
                if legacy and not _free_lock_file(self.locks.legacy_path(target), busy):
                    return 0  # an older eggproxy's download in progress
                with self.try_lock(target) as free:
                    if not free:
                        return 0
                    if name.endswith(".size"):
                        path.unlink()  # not counted: no data
                    elif now - path.stat().st_mtime >= older_than:
                        path.unlink()
                        return 1
            elif legacy and name.endswith(".lock") and entry not in ("", ".", ".."):
                _free_lock_file(path, busy, remove=True)
        return 0

    # --- paths -----------------------------------------------------------

    def project_dir(self, project: NormalizedName | None) -> Path:
        """The directory of a project, or the root for the root page."""
        return self.root if project is None else self.root / project

    def page_path(self, project: NormalizedName | None, fmt: Format) -> Path:
        # Asked on every page hit: keep the paths instead of joining them again.
        key = (project, fmt)
        path = self._page_paths.get(key)
        if path is None:
            if len(self._page_paths) > 65536:
                self._page_paths.clear()
            path = self._page_paths[key] = self.project_dir(project) / PAGE_FILES[fmt]
        return path

    def file_path(self, project: NormalizedName, filename: str) -> Path:
        return self.root / project / filename

    def part_path(self, target: Path) -> Path:
        return target.with_name(f".{target.name}.part")

    def create_part(self, part: Path) -> int:
        """A new partial download file, open for writing (mode 0644); its folder made if missing.

        From a spare where one is left (:mod:`eggproxy.spares`): opened, then
        renamed into place.  The holder of the file's lock calls it after
        removing any leftover partial file, so the rename replaces nothing.
        """
        return with_spare(lambda spares: _open_part(part, spares), self.spares)

    def size_path(self, target: Path) -> Path:
        """Where the downloader announces a download's size to its followers."""
        return target.with_name(f".{target.name}.size")

    # --- freshness ---------------------------------------------------------

    def page_mtime(self, project: NormalizedName | None) -> float | None:
        try:
            return self.page_path(project, "json").stat().st_mtime
        except FileNotFoundError:
            return None

    def snapshot(self, project: NormalizedName | None) -> Snapshot:
        """What is cached of a page, read once for one decision."""
        mtime = self.page_mtime(project)
        if mtime is None:
            return Snapshot(None, self.read_state(project), False)
        has_upstream = project is None or self.has_upstream(project)
        return Snapshot(mtime, self.read_state(project), has_upstream)

    def read_state(self, project: NormalizedName | None) -> PageState | None:
        try:
            return PageState.from_json((self.project_dir(project) / STATE).read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("broken page state for %s, refetching", project or "root")
            return None

    def write_page(
        self,
        project: NormalizedName | None,
        *,
        html: bytes,
        json_page: bytes,
        upstream: bytes | None,
        state: PageState,
        fetched: float,
        published: Callable[[], object] | None = None,
    ) -> None:
        """Store a fetched page: the upstream copy, the pages, then the state.

        The upstream copy first: a file a new page lists is found in it.  The
        JSON page's mtime is the page's fetch time: it is the last page written.
        ``published`` is called once the pages are in place (waiters may be
        answered), before the state.  The state comes last because it only
        serves revalidation (ETag, serial, digest): a crash before it leaves the
        new pages beside the previous state, whose ETag the upstream answers
        with the new page again (200), never a 304 that would keep old pages.
        """
        directory = self.project_dir(project)
        spares = self.spares
        if project is None or spares is None or not spares.folder(directory):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            if upstream is not None:
                write_atomic(directory / UPSTREAM, upstream, spares=spares)
            write_atomic(directory / PAGE_FILES["html"], html, mtime=fetched, spares=spares)
            write_atomic(directory / PAGE_FILES["json"], json_page, mtime=fetched, spares=spares)
            if published is not None:
                published()
            write_atomic(directory / STATE, state.to_json(), spares=spares)
        except InsufficientStorage:
            # Cut short, the new HTML page may sit beside the old JSON page: without a
            # state the next revalidation fetches the whole page (no 304 keeps the mix).
            with contextlib.suppress(FileNotFoundError):
                (directory / STATE).unlink()
            raise

    def write_state(self, project: NormalizedName | None, state: PageState) -> None:
        """Replace a cached page's state alone (new ETag or serial, same bytes)."""
        write_atomic(self.project_dir(project) / STATE, state.to_json(), spares=self.spares)

    def remove_page(self, project: NormalizedName) -> None:
        """Remove a project's pages, stored copy and state (its files stay)."""
        directory = self.root / project
        # The JSON page first: without it the project no longer counts as cached.
        for name in (PAGE_FILES["json"], PAGE_FILES["html"], UPSTREAM, STATE):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()

    def withheld_path(self, project: NormalizedName, filename: str) -> Path:
        return self.root / project / WITHHELD / filename

    def withhold(self, project: NormalizedName, filenames: Iterable[str]) -> list[str]:
        """Move cached files out of the URL space (a static server no longer sees them)."""
        moved = []
        for filename in filenames:
            for name in companions(filename):
                source = self.file_path(project, name)
                if not source.exists():
                    continue
                target = self.withheld_path(project, name)
                target.parent.mkdir(exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(source, target)
                    moved.append(name)
        return moved

    def restore(self, project: NormalizedName, filenames: Iterable[str]) -> list[str]:
        """Put withheld files back in place (offered again)."""
        restored: list[str] = []
        # One listing instead of three renames per offered file (issue 13: on every page miss).
        present = set(self.withheld_files(project))
        if not present:
            return restored
        for filename in filenames:
            for name in companions(filename):
                if name not in present:
                    continue
                source = self.withheld_path(project, name)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(source, self.file_path(project, name))
                    restored.append(name)
        return restored

    def withheld_files(self, project: NormalizedName) -> list[str]:
        """Names of the files moved out of the URL space."""
        try:
            return sorted(p.name for p in (self.root / project / WITHHELD).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove_file(self, project: NormalizedName, filename: str) -> list[str]:
        """Delete a cached file and its companions, offered or withheld."""
        removed = []
        for name in companions(filename):
            for path in (self.file_path(project, name), self.withheld_path(project, name)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(name)
        return removed

    def read_policy(self) -> str | None:
        """The fingerprint of the policy the cached pages were rendered with."""
        try:
            return (self.root / POLICY).read_text().strip()
        except FileNotFoundError:
            return None

    def write_policy(self, fingerprint: str) -> None:
        write_atomic(self.root / POLICY, fingerprint.encode() + b"\n")

    def is_withheld(self, project: NormalizedName, filename: str) -> bool:
        return self.withheld_path(project, filename).exists()

    def write_root(
        self, chunks: Iterable[tuple[bytes, bytes]], *, state: PageState, fetched: float
    ) -> None:
        """Store the root page from (HTML, JSON) chunks, streamed to disk as they come.

        Both pages are complete temporary files before either replaces the old
        one (HTML first, then JSON, then the state, as in :meth:`write_page`).
        """
        temps: list[str] = []
        handles: list[BinaryIO] = []
        try:
            for fmt in FORMATS:
                fd, tmp = temp_beside(self.root / PAGE_FILES[fmt])
                temps.append(tmp)
                handles.append(os.fdopen(fd, "wb"))
            html, json_page = handles
            with html, json_page:
                for html_chunk, json_chunk in chunks:
                    html.write(html_chunk)
                    json_page.write(json_chunk)
            for tmp, fmt in zip(temps, FORMATS, strict=True):
                os.chmod(tmp, 0o644)
                os.utime(tmp, (fetched, fetched))
                os.replace(tmp, self.root / PAGE_FILES[fmt])
            write_atomic(self.root / STATE, state.to_json())  # last, as in write_page
        finally:
            for handle in handles:  # closed already, unless the second could not be made
                handle.close()
            for tmp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def touch_page(self, project: NormalizedName | None, fetched: float) -> None:
        """Mark a page revalidated (the upstream answered 304 Not Modified)."""
        for fmt in FORMATS:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.page_path(project, fmt), (fetched, fetched))

    def has_upstream(self, project: NormalizedName) -> bool:
        return (self.root / project / UPSTREAM).exists()

    def read_upstream(self, project: NormalizedName) -> bytes | None:
        try:
            return (self.root / project / UPSTREAM).read_bytes()
        except FileNotFoundError:
            return None

    def cached_projects(self) -> list[NormalizedName]:
        """Every project with a cached page."""
        return sorted(
            NormalizedName(p.parent.name) for p in self.root.glob(f"*/{PAGE_FILES['json']}")
        )

    # --- locks ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, target: Path) -> Iterator[None]:
        """Hold the inter-process lock of ``target`` (blocking; :mod:`eggproxy.locks`)."""
        fd = self.locks.take(target, wait=True)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # closing releases the lock

    @contextlib.contextmanager
    def lock_within(self, target: Path, seconds: float) -> Iterator[bool]:
        """Hold the lock of ``target``, waiting at most ``seconds``; yield whether we do."""
        deadline = time.monotonic() + seconds
        while True:
            with self.try_lock(target) as held:
                if held or time.monotonic() >= deadline:
                    yield held
                    return
            time.sleep(_LOCK_POLL)

    @contextlib.contextmanager
    def try_lock(self, target: Path) -> Iterator[bool]:
        """Take the lock of ``target`` if it is free; yield whether we do."""
        fd = self.locks.take(target, wait=False)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)


def _free_lock_file(path: Path, busy: list[Path], *, remove: bool = False) -> bool:
    """Whether no process holds the ``flock`` of a per-entry lock file (or there is none).

    ``remove``: and remove it, while holding it, when free.  One that is held
    is added to ``busy`` (an older eggproxy's).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if remove:
            path.unlink()  # while held: a process can only have opened it before (mixed versions)
    except BlockingIOError:
        busy.append(path)
        return False
    finally:
        os.close(fd)
    return True


def disk_full(exc: OSError, what: str) -> InsufficientStorage | None:
    """The error to answer when ``exc`` says the cache's file system is full."""
    if exc.errno not in _DISK_FULL:
        return None
    return InsufficientStorage(f"cache disk full: cannot store {what}")


def companions(filename: str) -> tuple[str, str, str]:
    """A file and what is served beside it (PEP 658 metadata, PEP 740 provenance)."""
    return (filename, filename + METADATA_SUFFIX, filename + PROVENANCE_SUFFIX)


def make_parent(path: Path) -> None:
    """Make the folder ``path`` goes in, once a create there found it missing.

    Only then: the folder of a page or file nearly always exists (a lock no
    longer makes it, :mod:`eggproxy.locks`), and a ``mkdir`` that fails costs
    a system call per write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)


def create(path: Path | str, flags: int, mode: int) -> int:
    """``os.open(path, flags, mode)`` of a new file; its folder made if that is missing."""
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        make_parent(Path(path))
        return os.open(path, flags, mode)


def write_atomic(
    path: Path, data: bytes, *, mtime: float | None = None, spares: Spares | None = None
) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees half of it.

    ``spares``: written into a spare file of that pool where one is left.
    """
    try:
        with_spare(lambda pool: _write_atomic(path, data, mtime, pool), spares)
    except OSError as exc:
        full = disk_full(exc, path.name)
        if full is None:
            raise
        raise full from None


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_PART_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_temp_names = itertools.count()


def temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in the folder of ``path`` (made if missing): descriptor, name.

    As ``tempfile.mkstemp`` (a new name, ``O_EXCL``, mode 0600 until complete)
    without drawing a random name (issue 13: its Python steps, several per
    page miss).  Named ``.tmp-<pid>-<n>``: :meth:`Cache.clean_partials`
    removes those a crash left.  The one way the cache makes a temporary file;
    a write with a pool of spares takes one of those instead (empty, mode
    0644, on the same file system: :mod:`eggproxy.spares`), and
    :func:`publish` puts either where it belongs.
    """
    while True:
        tmp = os.path.join(path.parent, f".tmp-{os.getpid()}-{next(_temp_names)}")
        try:
            return create(tmp, _TEMP_FLAGS, 0o600), tmp
        except FileExistsError:  # left by a process of the same pid that died
            continue


def publish(tmp: str, path: Path) -> None:
    """Rename a complete temporary file to ``path``, making its folder if it is missing.

    Only a spare (made in its pool's folder) can find the folder missing: a
    temporary file beside ``path`` made it.
    """
    try:
        os.replace(tmp, path)
    except FileNotFoundError:
        if not os.path.exists(tmp):
            raise
        make_parent(path)
        os.replace(tmp, path)


def with_spare(make: Callable[[Spares | None], T], spares: Spares | None) -> T:
    """``make(spares)``, made again with ``None`` if it failed for a reason of its spare's.

    A spare removed under its writer (its pool closed, a sweep that
    misjudged: ``ENOENT``), or on another file system than its target (a
    project folder that is a mount point: ``EXDEV``).
    """
    if spares is not None:
        try:
            return make(spares)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EXDEV):
                raise
    return make(None)


def _open_part(part: Path, spares: Spares | None) -> int:
    taken = spares.file() if spares is not None else None
    fd, spare = taken if taken is not None else (create(part, _PART_FLAGS, 0o644), None)
    try:
        if spare is None:  # as a page, whatever the umask: a front end may be another user
            os.fchmod(fd, 0o644)  # (a spare is made so)
        else:
            publish(spare, part)
    except BaseException:
        os.close(fd)
        if spare is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spare)
        raise
    return fd


def _write_atomic(path: Path, data: bytes, mtime: float | None, spares: Spares | None) -> None:
    # On the descriptor alone: no buffered file object (its fstat, ioctl, lseek).
    taken = spares.file() if spares is not None else None
    fd, tmp = taken if taken is not None else temp_beside(path)
    try:
        try:
            write_all(fd, data)
            if taken is None:  # readable by a static web server running as another user
                os.fchmod(fd, 0o644)  # (a spare is made so)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic_stream(
    path: Path, chunks: Iterable[bytes], *, verify: Callable[[], None] | None = None
) -> None:
    """Like :func:`write_atomic` for a stream; ``verify`` may refuse it before it is visible."""
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        if verify is not None:
            verify()  # raises to refuse: the temporary file goes, nothing was visible
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
