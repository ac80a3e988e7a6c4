"""Files entering the cache from an import: verified, atomic, never overwritten."""

import hashlib
from pathlib import Path

import pytest

from eggproxy.cache import Cache
from eggproxy.errors import IntegrityError
from eggproxy.verified import store_verified


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    return cache


def test_matching_file_is_stored_then_left_alone(cache: Cache, tmp_path: Path) -> None:
    source = tmp_path / "a-1.0.tar.gz"
    source.write_bytes(b"x" * 200_000)
    hashes = {"sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    target = cache.root / "a" / source.name
    assert store_verified(cache, target, source, hashes) is True
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o644
    assert store_verified(cache, target, source, hashes) is False


def test_mismatch_leaves_nothing(cache: Cache, tmp_path: Path) -> None:
    source = tmp_path / "a-1.0.tar.gz"
    source.write_bytes(b"bytes")
    target = cache.root / "a" / source.name
    with pytest.raises(IntegrityError, match="expected sha256=00"):
        store_verified(cache, target, source, {"sha256": "0" * 64})
    assert not target.parent.exists() or not list(target.parent.iterdir())
    with pytest.raises(IntegrityError, match="a hash on its page"):
        store_verified(cache, target, source, {})


def test_a_cached_file_that_differs_is_reported_not_replaced(cache: Cache, tmp_path: Path) -> None:
    target = cache.root / "a" / "a-1.0.tar.gz"
    target.parent.mkdir()
    target.write_bytes(b"cached")
    source = tmp_path / "a-1.0.tar.gz"
    source.write_bytes(b"other")
    hashes = {"sha256": hashlib.sha256(b"other").hexdigest()}
    with pytest.raises(IntegrityError, match="in the cache"):
        store_verified(cache, target, source, hashes)
    assert target.read_bytes() == b"cached"
