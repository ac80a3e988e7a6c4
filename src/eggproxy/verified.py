"""Files that enter the cache from elsewhere than a download (``eggproxy import``).

Held to the downloader's rule: a file becomes visible only once its bytes match the hash
its page declares, through an atomic rename, under the file's own lock (so an import and a
download of the same file never interleave); a cached file is never overwritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from eggproxy.cache import Cache, write_atomic_stream
from eggproxy.download import choose_hash
from eggproxy.errors import IntegrityError
from eggproxy.sources.base import CHUNK_SIZE


def _chunks(path: Path, digest: hashlib._Hash) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            yield chunk


def _hexdigest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    for _chunk in _chunks(path, digest):
        pass
    return digest.hexdigest()


def store_verified(cache: Cache, target: Path, source: Path, hashes: Mapping[str, str]) -> bool:
    """Copy ``source`` to ``target`` if it matches ``hashes``; ``False``: already cached.

    Raises :class:`IntegrityError` when the bytes (or the cached file's) do not match, or
    when the page declared no hash to check them against.
    """
    expected = choose_hash(hashes)
    if expected is None:
        raise IntegrityError(target.name, "a hash on its page", "none")
    algorithm, wanted = expected
    with cache.lock(target):
        if target.exists():
            cached = _hexdigest(target, algorithm)
            if cached != wanted:
                raise IntegrityError(
                    target.name, f"{algorithm}={wanted}", f"{algorithm}={cached} in the cache"
                )
            return False
        digest = hashlib.new(algorithm)

        def verify() -> None:
            if digest.hexdigest() != wanted:
                actual = f"{algorithm}={digest.hexdigest()}"
                raise IntegrityError(target.name, f"{algorithm}={wanted}", actual)

        write_atomic_stream(target, _chunks(source, digest), verify=verify)
        return True
