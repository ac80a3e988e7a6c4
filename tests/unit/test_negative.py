from pathlib import Path

from eggproxy.names import NormalizedName
from eggproxy.negative import NegativeCache

NOPE = NormalizedName("nope")


def test_remembered_for_ttl(tmp_path: Path) -> None:
    cache = NegativeCache(tmp_path, ttl=60)
    assert not cache.known_missing(NOPE, 1000.0)
    cache.remember(NOPE, 1000.0)
    assert cache.known_missing(NOPE, 1059.0)
    assert not cache.known_missing(NOPE, 1060.0)
    assert (tmp_path / ".negative" / "nope").is_file()
    cache.forget(NOPE)
    assert not cache.known_missing(NOPE, 1001.0)


def test_ttl_zero_is_off(tmp_path: Path) -> None:
    cache = NegativeCache(tmp_path, ttl=0)
    cache.remember(NOPE, 1000.0)
    assert not cache.known_missing(NOPE, 1000.0)
    assert not (tmp_path / ".negative").exists()
