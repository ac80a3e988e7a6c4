"""Large files held open for granian's pathsend (standalone/openfiles.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eggproxy.standalone.openfiles import OpenFiles


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_file_removed_after_it_was_handed_out_is_still_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x" * 1000)
    opened = OpenFiles(enabled=True)
    path, st = opened.path(str(big), big.stat())
    big.unlink()  # evicted before granian opens what it was given
    assert Path(path).read_bytes() == b"x" * 1000
    assert st.st_size == 1000
    opened.close()


def test_a_file_gone_before_it_is_opened_is_the_callers_miss(tmp_path: Path) -> None:
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x")
    st = big.stat()
    big.unlink()
    with pytest.raises(FileNotFoundError):
        OpenFiles(enabled=True).path(str(big), st)


def test_a_replaced_file_is_described_as_opened(tmp_path: Path) -> None:
    page = tmp_path / "index.json"
    page.write_bytes(b"old")
    before = page.stat()
    (tmp_path / "new").write_bytes(b"newer page")
    os.replace(tmp_path / "new", page)  # a page rewritten between the stat and the send
    opened = OpenFiles(enabled=True)
    path, st = opened.path(str(page), before)
    assert Path(path).read_bytes() == b"newer page"
    assert st.st_size == len(b"newer page")
    opened.close()


def test_one_descriptor_per_file_closed_after_the_hold(tmp_path: Path, clock: Clock) -> None:
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x")
    opened = OpenFiles(enabled=True, hold=10.0, clock=clock)
    first, _ = opened.path(str(big), big.stat())
    clock.now += 9
    assert opened.path(str(big), big.stat())[0] == first  # shared, and its hold renewed
    clock.now += 9
    other = tmp_path / "other.tar.gz"
    other.write_bytes(b"y")
    opened.path(str(other), other.stat())
    assert len(opened) == 2  # big was handed out 9 s ago: still held
    clock.now += 5
    assert opened.path(str(other), other.stat())[0] != first
    assert len(opened) == 1  # big was last handed out 14 s ago: closed
    fd = int(first.rsplit("/", 1)[1])
    with pytest.raises(OSError):
        os.fstat(fd)  # closed
    opened.close()
    assert len(opened) == 0


def test_past_the_limit_files_are_sent_by_name(tmp_path: Path, clock: Clock) -> None:
    opened = OpenFiles(enabled=True, limit=1, clock=clock)
    names = []
    for n in range(2):
        f = tmp_path / f"f{n}"
        f.write_bytes(b"z")
        names.append(opened.path(str(f), f.stat())[0])
    assert names[0].startswith("/proc/self/fd/")
    assert names[1] == str(tmp_path / "f1")
    opened.close()


def test_without_proc_names_are_sent_as_before(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"z")
    st = f.stat()
    assert OpenFiles(enabled=False).path(str(f), st) == (str(f), st)


def test_held_descriptors_close_without_another_send(tmp_path: Path, clock: Clock) -> None:
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x")
    opened = OpenFiles(enabled=True, clock=clock)
    opened.path(str(big), big.stat())
    clock.now += opened.hold + 1
    opened.expire()  # what the server's idle loop calls: the evicted file's space comes back
    assert len(opened) == 0


def test_out_of_descriptors_sends_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x")

    def emfile(*args: object) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "open", emfile)
    opened = OpenFiles(enabled=True)
    assert opened.path(str(big), big.stat())[0] == str(big)  # granian opens it, as before
    assert len(opened) == 0
