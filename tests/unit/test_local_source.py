import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from eggproxy.errors import ProjectNotFound, UpstreamError
from eggproxy.names import NormalizedName
from eggproxy.sources.local import LocalSource

META = b"Metadata-Version: 2.1\nName: Private.Pkg\nVersion: 1.0\n"


def _wheel(folder: Path, name: str = "private_pkg-1.0-py3-none-any.whl") -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("private_pkg-1.0.dist-info/METADATA", META)
    path = folder / name
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "eggs").mkdir()
    return tmp_path / "eggs"


def test_lists_every_format_with_hashes_and_metadata(folder: Path) -> None:
    wheel = _wheel(folder)
    (folder / "private_pkg-0.9.tar.gz").write_bytes(b"sdist")
    (folder / "private_pkg-0.8-py3.11.egg").write_bytes(b"egg")
    (folder / "README.txt").write_text("not a distribution")
    source = LocalSource("local", folder)
    page = source.fetch_project(NormalizedName("private-pkg")).page
    assert page is not None
    by_name = {f.filename: f for f in page.files}
    assert set(by_name) == {wheel.name, "private_pkg-0.9.tar.gz", "private_pkg-0.8-py3.11.egg"}
    assert by_name[wheel.name].hashes == {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}
    assert by_name[wheel.name].core_metadata == {"sha256": hashlib.sha256(META).hexdigest()}
    assert by_name["private_pkg-0.9.tar.gz"].core_metadata is False
    assert list(source.fetch_index().page or ()) == [("private-pkg", None)]


def test_new_files_appear_and_hashes_are_remembered(folder: Path) -> None:
    source = LocalSource("local", folder)
    with pytest.raises(ProjectNotFound):
        source.fetch_project(NormalizedName("private-pkg"))
    _wheel(folder)
    # A new mtime, even within the same clock tick as the scan above.
    os.utime(folder, ns=(folder.stat().st_atime_ns, folder.stat().st_mtime_ns + 1))
    assert source.changed_since(0)
    page = source.fetch_project(NormalizedName("private-pkg")).page
    assert page is not None and len(page.files) == 1
    known = dict(source._known)
    source._listing_mtime = None  # force a rescan: nothing is hashed again
    source.fetch_project(NormalizedName("private-pkg"))
    assert all(source._known[k] is v for k, v in known.items())


def test_opens_only_listed_files_and_metadata(folder: Path) -> None:
    wheel = _wheel(folder)
    source = LocalSource("local", folder)
    with source.open_file(wheel.as_uri()) as response:
        assert b"".join(response.iter_content(1024)) == wheel.read_bytes()
        assert response.headers["Content-Length"] == str(wheel.stat().st_size)
    with source.open_file(wheel.as_uri() + ".metadata") as response:
        assert b"".join(response.iter_content(1024)) == META
    with pytest.raises(UpstreamError):
        source.open_file((folder.parent / "elsewhere.whl").as_uri())
    with pytest.raises(UpstreamError):
        source.open_file(Path("/etc/passwd").as_uri())
