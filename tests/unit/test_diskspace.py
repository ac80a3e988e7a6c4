from pathlib import Path

from eggproxy.diskspace import DiskSpace, disk_space


def test_low_below_five_percent_or_one_gib() -> None:
    gib = 1 << 30
    assert not DiskSpace(free=50 * gib, total=100 * gib).low
    assert DiskSpace(free=4 * gib, total=100 * gib).low
    assert DiskSpace(free=gib // 2, total=2 * gib).low
    assert "free of" in DiskSpace(free=gib, total=2 * gib).line()


def test_disk_space_of_a_directory(tmp_path: Path) -> None:
    space = disk_space(tmp_path)
    assert 0 <= space.free <= space.total
