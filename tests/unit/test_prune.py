"""The cache limit: least recently served first, down to the low-water mark, never a locked file."""

import os
from pathlib import Path

from eggproxy.cache import Cache
from eggproxy.prune import prune
from eggproxy.usage import ServedLog


def _cache(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    project = cache.root / "demo"
    project.mkdir()
    (project / "index.html").write_bytes(b"p" * 100)
    (project / "index.json").write_bytes(b"p" * 100)
    for i in range(5):
        path = project / f"demo-{i}.0.tar.gz"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + i, 1000 + i))  # downloaded in order 0..4
    return cache


def _left(cache: Cache) -> list[str]:
    return sorted(p.name for p in (cache.root / "demo").iterdir() if p.name.startswith("demo-"))


def test_under_the_limit_nothing_goes(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    report = prune(cache, ServedLog(cache.root), limit=10_000)
    assert report.evicted == 0 and len(_left(cache)) == 5


def test_least_recently_served_go_first_down_to_the_low_water_mark(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    served = ServedLog(cache.root, clock=lambda: 5000.0)
    served.touch("demo", "demo-0.0.tar.gz")  # downloaded first, served last
    served.touch("demo", "demo-1.0.tar.gz")
    # 5000 + 200 bytes (plus the layout marker) against a limit of 4000: down to 3600.
    report = prune(cache, served, limit=4000)
    assert _left(cache) == ["demo-0.0.tar.gz", "demo-1.0.tar.gz", "demo-4.0.tar.gz"]
    assert (report.evicted, report.evicted_bytes) == (2, 2000)
    assert report.after <= 3600 < report.before
    assert (cache.root / "demo" / "index.json").exists()  # pages stay
    assert "demo/demo-2.0.tar.gz" not in served.last_served()


def test_a_locked_file_is_never_evicted(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    oldest = cache.root / "demo" / "demo-0.0.tar.gz"
    with cache.lock(oldest):  # a download or a verification holds it
        report = prune(cache, ServedLog(cache.root), limit=4000)
    assert oldest.exists()
    assert report.skipped == 1
    assert _left(cache) == ["demo-0.0.tar.gz", "demo-3.0.tar.gz", "demo-4.0.tar.gz"]
