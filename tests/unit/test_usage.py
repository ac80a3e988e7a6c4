"""Last-served records: at most one per file per interval, batched, largest time wins."""

from pathlib import Path

from eggproxy.usage import ServedLog


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_touch_records_once_per_interval(tmp_path: Path) -> None:
    clock = Clock()
    log = ServedLog(tmp_path, interval=3600, clock=clock)
    log.touch("demo", "a.whl")
    clock.now += 60
    log.touch("demo", "a.whl")  # within the hour: not recorded again
    assert log.last_served() == {"demo/a.whl": 1_000_000.0}
    clock.now += 3600
    log.touch("demo", "a.whl")
    log.touch("demo", "b.whl")
    assert log.last_served() == {"demo/a.whl": 1_003_660.0, "demo/b.whl": 1_003_660.0}
    log.close()


def test_records_of_several_processes_keep_the_latest(tmp_path: Path) -> None:
    early, late = Clock(), Clock()
    late.now += 500
    one, two = ServedLog(tmp_path, clock=late), ServedLog(tmp_path, clock=early)
    one.touch("demo", "a.whl")
    one.flush()
    two.touch("demo", "a.whl")  # an older time, written later
    two.flush()
    assert ServedLog(tmp_path).last_served() == {"demo/a.whl": late.now}
    one.forget(["demo/a.whl"])
    assert ServedLog(tmp_path).last_served() == {}
    one.close()
    two.close()


def test_nothing_served_writes_nothing(tmp_path: Path) -> None:
    log = ServedLog(tmp_path)
    log.flush()
    assert log.last_served() == {}
    assert not (tmp_path / ".usage.sqlite").exists()
