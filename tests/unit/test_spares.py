"""Spare inodes made ahead of misses (eggproxy.spares, issue 13 round 7)."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eggproxy.cache import Cache, PageState, write_atomic
from eggproxy.locks import Locks
from eggproxy.names import NormalizedName
from eggproxy.spares import FILES, FOLDERS, SPARE_DIR, Spares, sweep

pytestmark = pytest.mark.skipif(
    not hasattr(fcntl, "F_OFD_SETLKW"), reason="spares need record locks"
)


def _pools(root: Path) -> list[Path]:
    base = root / SPARE_DIR
    return sorted(p for p in base.iterdir()) if base.is_dir() else []


def _settle(spares: Spares, files: int = FILES, folders: int = FOLDERS) -> None:
    """Wait (bounded) until the refill thread has made the whole pool."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pools = _pools(spares.base.parent)
        inside = list(pools[0].iterdir()) if pools else []
        if sum(p.is_file() for p in inside) >= files and sum(p.is_dir() for p in inside) >= folders:
            return
        time.sleep(0.01)
    raise AssertionError("the pool was not refilled")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    cache = Cache(tmp_path / "cache", spares=True)
    cache.prepare()
    yield cache
    cache.close()


def _started(cache: Cache) -> Spares:
    spares = cache.spares
    assert spares is not None
    taken = spares.file()  # starts the pool; nothing is left at first
    if taken is not None:
        os.close(taken[0])
        os.unlink(taken[1])
    _settle(spares)
    return spares


def _inodes(pool: Path) -> set[int]:
    return {p.stat().st_ino for p in pool.iterdir()}


PAGE_FILES = ("index.html", "index.json", ".upstream.json", ".state.json")


def _write_page(cache: Cache, name: str) -> list[Path]:
    """A page of ``name`` written fetched at 1000.0; the four files it wrote."""
    project = NormalizedName(name)
    cache.write_page(
        project,
        html=b"<html></html>\n",
        json_page=b"{}",
        upstream=b"{}",
        state=PageState(url=f"http://127.0.0.1/{name}/"),
        fetched=1000.0,
    )
    return [cache.project_dir(project) / n for n in PAGE_FILES]


def test_a_page_write_takes_a_spare_folder_and_spare_files(cache: Cache) -> None:
    _started(cache)
    (pool,) = _pools(cache.root)
    spare = _inodes(pool)
    written = _write_page(cache, "demo")
    folder = cache.project_dir(NormalizedName("demo"))
    assert folder.stat().st_ino in spare
    assert {p.stat().st_ino for p in written} <= spare
    assert (folder / "index.json").read_bytes() == b"{}"
    assert (folder / "index.json").stat().st_mtime == 1000.0
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_a_partial_download_is_a_spare_renamed_beside_its_file(cache: Cache) -> None:
    _started(cache)
    (pool,) = _pools(cache.root)
    spare = _inodes(pool)
    part = cache.part_path(cache.file_path(NormalizedName("new"), "new-1.0.tar.gz"))
    fd = cache.create_part(part)  # its folder does not exist yet
    try:
        os.write(fd, b"data")
    finally:
        os.close(fd)
    assert part.stat().st_ino in spare
    assert part.read_bytes() == b"data"
    assert stat.S_IMODE(part.stat().st_mode) == 0o644


def test_the_pool_is_refilled(cache: Cache) -> None:
    spares = _started(cache)
    for n in range(FILES):
        write_atomic(cache.root / f"f{n}", b"x", spares=spares)
    _settle(spares)


def test_an_empty_pool_creates_as_before(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", spares=True)
    cache.prepare()
    try:
        spares = cache.spares
        assert spares is not None
        spares._files.clear()  # as if taken by a burst of misses, before the refill
        write_atomic(cache.root / "page", b"x", spares=spares)
        assert (cache.root / "page").read_bytes() == b"x"
    finally:
        cache.close()


def test_a_spare_removed_under_the_pool_is_skipped(cache: Cache) -> None:
    spares = _started(cache)
    first = spares._files[0]
    os.unlink(first)
    taken = spares.file()
    assert taken is not None
    os.close(taken[0])
    assert taken[1] != first


def test_out_of_descriptors_keeps_the_spares(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    spares = _started(cache)
    left = list(spares._files)

    def no_descriptors(*args: object) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("eggproxy.spares.os.open", no_descriptors)
    assert spares.file() is None
    assert list(spares._files) == left


def test_a_spare_removed_while_written_falls_back_to_a_create(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    spares = _started(cache)
    real = spares.file

    def taken_then_removed() -> tuple[int, str] | None:
        taken = real()
        assert taken is not None
        os.unlink(taken[1])  # as by a pool closing under a request
        return taken

    monkeypatch.setattr(spares, "file", taken_then_removed)
    write_atomic(cache.root / "page", b"x", spares=spares)
    assert (cache.root / "page").read_bytes() == b"x"
    part = cache.part_path(cache.file_path(NormalizedName("demo"), "demo-1.0.tar.gz"))
    os.close(cache.create_part(part))
    assert part.exists()


def test_partial_files_and_pages_are_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        for spares in (True, False):
            cache = Cache(tmp_path / f"cache-{spares}", spares=spares)
            cache.prepare()
            if cache.spares is not None:
                _started(cache)
            part = cache.part_path(cache.file_path(NormalizedName("demo"), "demo-1.0.tar.gz"))
            os.close(cache.create_part(part))
            assert stat.S_IMODE(part.stat().st_mode) == 0o644, spares
            for page in _write_page(cache, "paged"):
                assert stat.S_IMODE(page.stat().st_mode) == 0o644, (spares, page.name)
            cache.close()
    finally:
        os.umask(old)


def test_a_closed_pool_starts_no_other(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", spares=True)
    cache.prepare()
    _started(cache)
    cache.close()
    assert cache.spares is not None and cache.spares.file() is None
    assert _pools(cache.root) == []


def test_a_folder_already_there_keeps_its_files_and_the_spare(cache: Cache) -> None:
    spares = _started(cache)
    folder = cache.root / "there"
    folder.mkdir()
    (folder / "kept").write_bytes(b"k")
    left = len(spares._folders)
    assert spares.folder(folder)
    assert (folder / "kept").read_bytes() == b"k"
    assert len(spares._folders) == left


def test_close_removes_the_pool(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", spares=True)
    cache.prepare()
    _started(cache)
    assert len(_pools(cache.root)) == 1
    cache.close()
    assert _pools(cache.root) == []


def _start_and_die(root: str) -> None:
    spares = Spares(Path(root), Locks(Path(root)))
    taken = spares.file()
    if taken is not None:
        os.close(taken[0])
    os._exit(0)  # no close: as a worker killed


def test_sweep_removes_the_pools_of_ended_processes_only(cache: Cache) -> None:
    _started(cache)
    (ours,) = _pools(cache.root)
    child = multiprocessing.get_context("spawn").Process(
        target=_start_and_die, args=(str(cache.root),)
    )
    child.start()
    child.join(60)
    assert len(_pools(cache.root)) == 2
    assert sweep(cache.root, cache.locks) == 1
    assert _pools(cache.root) == [ours]


def test_a_new_pool_removes_the_pools_of_ended_processes(cache: Cache) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=_start_and_die, args=(str(cache.root),)
    )
    child.start()
    child.join(60)
    (dead,) = _pools(cache.root)
    spares = _started(cache)  # as an Apache child after a graceful restart
    deadline = time.monotonic() + 30
    while dead.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not dead.exists()
    assert [pool.parent for pool in _pools(cache.root)] == [spares.base]  # ours alone


def _take_in_child(spares: Spares, queue: multiprocessing.Queue[str]) -> None:
    taken = spares.file()
    queue.put(taken[1] if taken is not None else "")
    spares.close()


def test_a_forked_child_makes_a_pool_of_its_own(cache: Cache) -> None:
    spares = _started(cache)
    (ours,) = _pools(cache.root)
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(target=_take_in_child, args=(spares, queue))
    child.start()
    taken = queue.get(timeout=60)
    child.join(60)
    assert not taken.startswith(str(ours))
    assert len(list(ours.iterdir())) == FILES + FOLDERS  # the parent's spares untouched


def test_no_pool_without_record_locks(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    spares = Spares(root, Locks(root, record_locks=False))
    assert spares.file() is None
    assert not spares.folder(root / "demo")
    assert not (root / SPARE_DIR).exists()


def test_commands_keep_no_pool(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    write_atomic(cache.root / "page", b"x", spares=cache.spares)
    assert not (cache.root / SPARE_DIR).exists()
