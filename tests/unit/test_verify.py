"""Verification: files re-hashed against the stored upstream page; mismatches quarantined."""

import hashlib
import json
from pathlib import Path

from eggproxy.cache import UPSTREAM, Cache
from eggproxy.verify import verify

GOOD, BAD, META = b"good bytes" * 1000, b"bad bytes" * 1000, b"Metadata-Version: 2.1\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    project = cache.root / "demo"
    project.mkdir()
    page = {
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "https://f.test/a",
                "hashes": {"sha256": _sha(GOOD)},
            },
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "https://f.test/b",
                "hashes": {"sha256": _sha(BAD + b"!")},
                "core-metadata": {"sha256": _sha(META)},
            },
            {"filename": "demo-0.1.tar.gz", "url": "https://f.test/c", "hashes": {}},
        ],
    }
    (project / UPSTREAM).write_text(json.dumps(page))
    (project / "index.json").write_text("{}")
    (project / "demo-1.0.tar.gz").write_bytes(GOOD)
    (project / "demo-1.0-py3-none-any.whl").write_bytes(BAD)  # rotted on disk
    (project / "demo-1.0-py3-none-any.whl.metadata").write_bytes(META)
    (project / "demo-0.1.tar.gz").write_bytes(b"no hash recorded")
    return cache


def test_mismatch_is_quarantined_and_reported(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    seen: list[int] = []
    report = verify(cache, jobs=3, progress=seen.append)
    assert report.checked == 3  # the sdist, the wheel, the PEP 658 metadata
    assert [m.filename for m in report.mismatches] == ["demo-1.0-py3-none-any.whl"]
    mismatch = report.mismatches[0]
    assert mismatch.expected == f"sha256={_sha(BAD + b'!')}"
    assert mismatch.actual == f"sha256={_sha(BAD)}"
    assert mismatch.moved_to == cache.root / ".quarantine" / "demo" / "demo-1.0-py3-none-any.whl"
    assert mismatch.moved_to.read_bytes() == BAD
    assert not (cache.root / "demo" / "demo-1.0-py3-none-any.whl").exists()
    assert report.unverifiable == ["demo/demo-0.1.tar.gz"]
    assert sum(seen) == len(GOOD) + len(BAD) + len(META) + len(b"no hash recorded")
    assert "1 mismatched" in report.line()


def test_only_the_projects_asked(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    report = verify(cache, ["other"])  # type: ignore[list-item]
    assert report.checked == 0 and not report.mismatches
    assert (cache.root / "demo" / "demo-1.0-py3-none-any.whl").exists()
