"""Prefetch's index over a Proxy (PEP 658 first, else the file itself) and its output."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from eggproxy.config import Config
from eggproxy.offline.prefetch import prefetch, sdist_metadata, summary, wheel_metadata
from eggproxy.offline.target import Target
from eggproxy.proxy import Proxy

from .fakeindex import FakeAdapter, session_with

INDEX = "https://up.test/simple/"
JSON = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
LINUX = Target.build("3.12", ["manylinux_2_28_x86_64"])


def _wheel(name: str, requires: list[str]) -> tuple[str, bytes, bytes]:
    filename = f"{name}-1.0-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", meta)
    return filename, buffer.getvalue(), meta.encode()


def _sdist(name: str, pkg_info: str) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = pkg_info.encode()
        info = tarfile.TarInfo(f"{name}-1.0/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return f"{name}-1.0.tar.gz", buffer.getvalue()


def _serve(
    adapter: FakeAdapter, project: str, filename: str, data: bytes, meta: bytes | None
) -> None:
    url = f"https://files.test/{filename}"
    item: dict[str, object] = {
        "filename": filename,
        "url": url,
        "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
    }
    adapter.answers[url] = (200, {}, data)
    if meta is not None:
        item["core-metadata"] = {"sha256": hashlib.sha256(meta).hexdigest()}
        adapter.answers[url + ".metadata"] = (200, {}, meta)
    page = {"meta": {"api-version": "1.0"}, "name": project, "files": [item]}
    adapter.answers[f"{INDEX}{project}/"] = (200, JSON, json.dumps(page).encode())


@pytest.fixture
def adapter() -> FakeAdapter:
    adapter = FakeAdapter()
    app, app_data, app_meta = _wheel("app", ["lib", "src"])
    _serve(adapter, "app", app, app_data, app_meta)
    lib, lib_data, _meta = _wheel("lib", [])
    _serve(adapter, "lib", lib, lib_data, None)  # no PEP 658 metadata
    src, src_data = _sdist("src", "Metadata-Version: 2.2\nName: src\nVersion: 1.0\n")
    _serve(adapter, "src", src, src_data, None)
    return adapter


def test_resolves_through_the_proxy_and_reports_each_file(
    adapter: FakeAdapter, tmp_path: Path
) -> None:
    proxy = Proxy(Config(cache_dir=tmp_path, index=INDEX), session=session_with(adapter))
    proxy.prepare()
    out = io.StringIO()
    resolution, fetched = prefetch(proxy, [(Requirement("app"), "r.txt:1")], LINUX, out, False)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [
        "app/app-1.0-py3-none-any.whl",
        "app/app-1.0-py3-none-any.whl.metadata",
        "lib/lib-1.0-py3-none-any.whl",
        "src/src-1.0.tar.gz",
    ]
    # Files read while resolving were cached then; all of them are new to this run.
    assert [line.split()[0] for line in lines] == ["fetched"] * 4
    # PEP 658 for app; lib's whole wheel (no metadata file); src's sdist for its PKG-INFO.
    assert adapter.calls["https://files.test/app-1.0-py3-none-any.whl.metadata"] == 1
    assert summary(resolution, fetched).startswith("prefetched 3 projects, 4 files (4 fetched, 0")
    _resolution, again = prefetch(proxy, [(Requirement("app"), "r.txt:1")], LINUX, out, False)
    assert not any(f.downloaded for f in again)


def test_a_progress_bar_instead_of_lines(adapter: FakeAdapter, tmp_path: Path) -> None:
    proxy = Proxy(Config(cache_dir=tmp_path, index=INDEX), session=session_with(adapter))
    proxy.prepare()
    out = io.StringIO()
    prefetch(proxy, [(Requirement("lib"), "r.txt:1")], LINUX, out, progress=True)
    assert out.getvalue() == ""


def test_metadata_inside_distributions(tmp_path: Path) -> None:
    name, data, meta = _wheel("app", ["lib"])
    (tmp_path / name).write_bytes(data)
    assert wheel_metadata(tmp_path / name) == meta
    name, data = _sdist("src", "Metadata-Version: 2.2\n")
    (tmp_path / name).write_bytes(data)
    assert sdist_metadata(tmp_path / name) == b"Metadata-Version: 2.2\n"
