import errno
import os
from pathlib import Path

import pytest

from eggproxy.cache import Cache, Freshness, PageState, freshness, write_atomic
from eggproxy.errors import ConfigError, InsufficientStorage
from eggproxy.names import NormalizedName

P = NormalizedName("demo-pkg")


def test_freshness() -> None:
    assert freshness(None, 10, 100) is Freshness.MISSING
    assert freshness(95, 10, 100) is Freshness.FRESH
    assert freshness(90, 10, 100) is Freshness.STALE


def test_layout_marker(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.prepare()
    assert (tmp_path / ".eggproxy-layout").read_text() == "1\n"
    (tmp_path / ".eggproxy-layout").write_text("99\n")
    with pytest.raises(ConfigError):
        cache.prepare()


def test_write_page_sets_fetch_time(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    state = PageState(url="https://u/simple/demo-pkg/", etag='"e"', serial=3)
    cache.write_page(P, html=b"h", json_page=b"j", upstream=b"u", state=state, fetched=1000.0)
    assert cache.page_mtime(P) == 1000.0
    assert cache.read_state(P) == state
    assert cache.read_upstream(P) == b"u"
    assert cache.cached_projects() == [P]
    cache.touch_page(P, 2000.0)
    assert freshness(cache.page_mtime(P), 10, 2005.0) is Freshness.FRESH


def test_pages_are_in_place_before_the_state_is_written(tmp_path: Path) -> None:
    """Waiters are answered at ``published``; a crash before the state leaves the old one."""
    cache = Cache(tmp_path)
    seen: list[tuple[bool, bool]] = []

    def published() -> None:
        names = ("index.html", "index.json", ".upstream.json")
        assert all((tmp_path / P / name).exists() for name in names)
        seen.append((cache.page_mtime(P) == 1000.0, cache.read_state(P) is None))

    state = PageState(url="https://u/simple/demo-pkg/", etag='"e"')
    cache.write_page(
        P,
        html=b"h",
        json_page=b"j",
        upstream=b"u",
        state=state,
        fetched=1000.0,
        published=published,
    )
    assert seen == [(True, True)]  # the pages in place, the state not yet
    assert cache.read_state(P) == state


def test_broken_state_is_refetched(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    (tmp_path / "demo-pkg").mkdir()
    (tmp_path / "demo-pkg" / ".state.json").write_text("{broken")
    assert cache.read_state(P) is None


def test_write_atomic_leaves_no_temp_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "f", b"data")
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_clean_partials_spares_live_downloads(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    (tmp_path / "demo-pkg").mkdir()
    dead = tmp_path / "demo-pkg" / "a-1.0.tar.gz"
    live = tmp_path / "demo-pkg" / "b-1.0.tar.gz"
    cache.part_path(dead).write_bytes(b"x")
    cache.part_path(live).write_bytes(b"x")
    with cache.lock(live):
        assert cache.clean_partials() == 1
    assert not cache.part_path(dead).exists()
    assert cache.part_path(live).exists()


def test_try_lock(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    target = tmp_path / "x"
    with cache.lock(target), cache.try_lock(target) as held:
        assert not held
    with cache.try_lock(target) as held:
        assert held


def test_lock_within_gives_up_after_its_limit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    target = tmp_path / "demo-pkg" / "x.whl"
    with cache.lock(target), cache.lock_within(target, 0.05) as held:
        assert not held
    with cache.lock_within(target, 0.05) as held:
        assert held


def test_a_full_disk_is_insufficient_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("eggproxy.cache.os.replace", full)
    with pytest.raises(InsufficientStorage, match="disk full"):
        write_atomic(tmp_path / "index.json", b"{}")
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def test_a_page_write_cut_by_a_full_disk_drops_the_new_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(tmp_path)
    real = write_atomic

    def full_for_pages(
        path: Path, data: bytes, *, mtime: float | None = None, spares: object = None
    ) -> None:
        if path.name.startswith("index."):
            raise InsufficientStorage("cache disk full: cannot store index.html")
        real(path, data, mtime=mtime)

    monkeypatch.setattr("eggproxy.cache.write_atomic", full_for_pages)
    with pytest.raises(InsufficientStorage):
        cache.write_page(
            P,
            html=b"<html/>",
            json_page=b"{}",
            upstream=b"{}",
            state=PageState(url="https://u/simple/demo-pkg/", etag='"new"'),
            fetched=1000.0,
        )
    assert cache.read_state(P) is None  # a 304 against the new ETag cannot keep old pages
