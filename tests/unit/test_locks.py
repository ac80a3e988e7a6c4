"""The cache's locks (eggproxy.locks): record locks in one file, per-entry files elsewhere."""

import fcntl
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eggproxy import failures
from eggproxy.cache import Cache
from eggproxy.errors import ConfigError, RecentFailure, UpstreamUnavailable
from eggproxy.locks import LOCK_FILE, Locks, offset

RECORD_LOCKS = hasattr(fcntl, "F_OFD_SETLKW")
needs_record_locks = pytest.mark.skipif(not RECORD_LOCKS, reason="no F_OFD_SETLK here")


@pytest.fixture(params=[True, False], ids=["record", "files"])
def locks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Locks]:
    if request.param and not RECORD_LOCKS:
        pytest.skip("no F_OFD_SETLK here")
    yield Locks(tmp_path / "cache", record_locks=request.param)


def test_a_held_lock_excludes_another_descriptor_not_another_entry(locks: Locks) -> None:
    target = locks.root / "demo" / "demo-1.0.whl"
    fd = locks.take(target, wait=True)
    assert fd is not None
    try:
        assert locks.take(target, wait=False) is None
        other = locks.take(target.with_name("demo-2.0.whl"), wait=False)
        assert other is not None
        os.close(other)
    finally:
        os.close(fd)
    again = locks.take(target, wait=False)
    assert again is not None
    os.close(again)


def test_a_waiting_thread_gets_the_lock_when_it_is_released(locks: Locks) -> None:
    target = locks.root / ".locks" / "demo"
    fd = locks.take(target, wait=True)
    assert fd is not None
    got = threading.Event()

    def wait() -> None:
        mine = locks.take(target, wait=True)
        assert mine is not None
        got.set()
        os.close(mine)

    thread = threading.Thread(target=wait)
    thread.start()
    assert not got.wait(0.2)  # still held
    os.close(fd)
    thread.join(10)
    assert got.is_set()


def _hold(root: Path, target: Path, held: Any, done: Any) -> None:
    """In a child process: hold the lock of ``target`` until ``done``."""
    fd = Locks(root).take(target, wait=True)
    held.set()
    done.wait(30)
    if fd is not None:
        os.close(fd)


@needs_record_locks
def test_another_process_holding_the_lock_excludes_us(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    target = root / "demo" / "demo-1.0.whl"
    context = multiprocessing.get_context("spawn")
    held, done = context.Event(), context.Event()
    child = context.Process(target=_hold, args=(root, target, held, done))
    child.start()
    try:
        assert held.wait(30)
        assert Locks(root).take(target, wait=False) is None
    finally:
        done.set()
        child.join(30)
    fd = Locks(root).take(target, wait=False)
    assert fd is not None
    os.close(fd)


@needs_record_locks
def test_record_locks_leave_no_file_per_entry(tmp_path: Path) -> None:
    locks = Locks(tmp_path)
    fd = locks.take(tmp_path / "demo" / "demo-1.0.whl", wait=True)
    assert fd is not None
    os.close(fd)
    assert not (tmp_path / "demo").exists()  # no lock file made the folder
    assert sorted(p.name for p in (tmp_path / ".locks").iterdir()) == [LOCK_FILE]


@needs_record_locks
def test_nodes_mounting_the_cache_elsewhere_lock_the_same_entries(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "mount").symlink_to(tmp_path / "cache")
    here, there = Locks(tmp_path / "cache"), Locks(tmp_path / "mount")
    assert here.key(tmp_path / "cache" / "demo" / "x.whl") == "/demo/x.whl"
    fd = here.take(tmp_path / "cache" / "demo" / "x.whl", wait=True)
    assert fd is not None
    try:
        assert there.take(tmp_path / "mount" / "demo" / "x.whl", wait=False) is None
    finally:
        os.close(fd)


def test_offsets_are_stable_and_in_range() -> None:
    assert offset("/demo/x.whl") == offset("/demo/x.whl")
    assert offset("/demo/x.whl") != offset("/demo/y.whl")
    assert all(0 <= offset(f"/p{n}/f") < 2**62 for n in range(1000))


def test_per_entry_lock_files_where_record_locks_are_missing(tmp_path: Path) -> None:
    locks = Locks(tmp_path, record_locks=False)
    target = tmp_path / "demo" / "demo-1.0.whl"
    fd = locks.take(target, wait=True)
    assert fd is not None
    os.close(fd)
    assert (tmp_path / "demo" / ".demo-1.0.whl.lock").exists()


@needs_record_locks
def test_clean_partials_removes_free_lock_files_of_older_versions(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.prepare()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo-1.0.whl").write_bytes(b"x")
    old = tmp_path / "demo" / ".demo-1.0.whl.lock"
    busy = tmp_path / "demo" / ".demo-2.0.whl.lock"
    page = tmp_path / ".locks" / ".demo.lock"
    for path in (old, busy, page):
        path.touch()
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # an older eggproxy still downloading
    try:
        assert cache.clean_partials() == 0  # lock files are not counted as partial files
    finally:
        os.close(fd)
    assert not old.exists() and not page.exists()
    assert busy.exists()
    assert (tmp_path / ".locks" / LOCK_FILE).exists()
    assert (tmp_path / "demo" / "demo-1.0.whl").exists()


def test_clean_partials_removes_temporary_files_of_the_root_too(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.prepare()
    leftover = tmp_path / ".tmp-1-1"
    leftover.write_bytes(b"half a root page")
    os.utime(leftover, (0, 0))
    assert cache.clean_partials() == 1
    assert not leftover.exists()


@needs_record_locks
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_creating_the_lock_file_gives_it_to_the_owner_of_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    os.chown(root, 65534, 65534)  # a cache owned by its server's user; eggproxy update as root
    Locks(root).prepare()
    made = root / ".locks" / LOCK_FILE
    assert (made.stat().st_uid, made.parent.stat().st_uid) == (65534, 65534)


@needs_record_locks
def test_the_lock_file_is_group_writable_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        Locks(tmp_path).prepare()
    finally:
        os.umask(old)
    assert (tmp_path / ".locks" / LOCK_FILE).stat().st_mode & 0o777 == 0o664
    assert (tmp_path / ".locks").stat().st_mode & 0o777 == 0o775


@needs_record_locks
def test_a_lock_file_that_cannot_be_locked_is_said_at_start(tmp_path: Path) -> None:
    (tmp_path / ".locks" / LOCK_FILE).mkdir(parents=True)  # not a file to open for writing
    with pytest.raises(ConfigError, match=r"cannot lock .*eggproxy\.lock: is a directory"):
        Cache(tmp_path).prepare()


@needs_record_locks
def test_clean_partials_keeps_the_download_an_older_eggproxy_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(tmp_path)
    cache.prepare()
    (tmp_path / "demo").mkdir()
    part = tmp_path / "demo" / ".demo-1.0.whl.part"
    part.write_bytes(b"half")
    held = tmp_path / "demo" / ".demo-1.0.whl.lock"
    held.touch()
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert cache.clean_partials() == 0
    finally:
        os.close(fd)
    assert part.exists() and held.exists()
    assert "an older eggproxy is using this cache" in caplog.text
    assert cache.clean_partials() == 1  # once it is gone
    assert not part.exists() and not held.exists()


def test_clean_partials_leaves_odd_names_alone(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.prepare()
    (tmp_path / "demo").mkdir()
    for odd in (".part", ".size", ".lock", "...part", "....size", "...lock"):
        (tmp_path / "demo" / odd).touch()
    (tmp_path / "demo" / ".x.part").mkdir()
    (tmp_path / "demo" / ".y.lock").mkdir()
    assert cache.clean_partials() == 0
    assert len(list((tmp_path / "demo").iterdir())) == 8


def test_clean_partials_passes_over_a_folder_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(tmp_path)
    cache.prepare()
    (tmp_path / "lost+found").mkdir()  # root's own, mode 0700, on a cache of its own
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / ".demo-1.0.whl.part").write_bytes(b"half")
    real = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path).name == "lost+found":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert cache.clean_partials() == 1
    assert "lost+found: Permission denied" in caplog.text


def test_a_failure_is_recorded_where_no_folder_was_made_yet(tmp_path: Path) -> None:
    target = tmp_path / "demo" / "demo-1.0.whl"
    failures.record(target, UpstreamUnavailable("upstream down"), time.time())
    with pytest.raises(RecentFailure):
        failures.check(target, time.time() - 1, time.time())
