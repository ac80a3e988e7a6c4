"""Builders for tiny, real, installable fixture distributions (stdlib only, no build tools).

Layout written by :func:`build_projects`: ``dest/<canonical name>/<files>`` plus a
``project.json`` sidecar per project holding the display name and per-file index data
(``yanked``, ``requires-python``) that :class:`upstream.Upstream` serves.
"""

from __future__ import annotations

import gzip
import inspect
import io
import json
import re
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

SIDECAR = "project.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: archives are byte-for-byte reproducible


def canonicalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(name: str) -> str:
    """Project name as spelled in wheel/sdist file names (PEP 427/625)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def write_wheel(
    directory: str,
    dist: str,
    version: str,
    files: dict[str, bytes],
    meta: bytes,
    tag: str = "py3-none-any",
) -> str:
    """Write ``<dist>-<version>-<tag>.whl`` with WHEEL and a valid RECORD; return its name.

    Self-contained on purpose: its source is embedded as the build backend of fixture sdists.
    """
    import base64
    import hashlib
    import os
    import zipfile

    info = f"{dist}-{version}.dist-info"
    wheel = b"Wheel-Version: 1.0\nGenerator: eggproxy-tests\nRoot-Is-Purelib: true\n"
    wheel += f"Tag: {tag}\n".encode()
    files = {**files, f"{info}/METADATA": meta, f"{info}/WHEEL": wheel}
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    filename = f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, zipfile.ZIP_DEFLATED)
    return filename


def metadata(
    name: str, version: str, requires: Sequence[str] = (), requires_python: str | None = None
) -> bytes:
    """Core metadata (METADATA / PKG-INFO) bytes."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines.append(f"Summary: eggproxy test fixture {name}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires]
    return ("\n".join(lines) + "\n").encode()


def note(project_dir: Path, name: str, filename: str | None = None, **info: str) -> None:
    """Record the display name and index data of ``filename`` in the project's sidecar."""
    sidecar = project_dir / SIDECAR
    data = json.loads(sidecar.read_text()) if sidecar.exists() else {"files": {}}
    data["name"] = name
    if filename is not None:
        data["files"].setdefault(filename, {}).update(info)
    sidecar.write_text(json.dumps(data, indent=1, sort_keys=True))


def _dir(dest: Path, name: str) -> Path:
    d = dest / canonicalize(name)
    d.mkdir(parents=True, exist_ok=True)
    return d


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    modules: dict[str, bytes],
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    tag: str = "py3-none-any",
    metadata_file: bool = True,
) -> Path:
    """Write a wheel (for ``tag``) and its PEP 658 ``<wheel>.metadata`` (unless
    ``metadata_file`` is false: the index then lists no metadata) into ``dest/<canonical name>/``.
    """
    d = _dir(dest, name)
    meta = metadata(name, version, requires, requires_python)
    path = d / write_wheel(str(d), dist_name(name), version, modules, meta, tag)
    if metadata_file:
        path.with_name(path.name + ".metadata").write_bytes(meta)
    note(d, name, path.name, **({"requires-python": requires_python} if requires_python else {}))
    return path


def _backend(dist: str, version: str, modules: Sequence[str]) -> bytes:
    """Source of a dependency-free PEP 517 backend that turns the sdist into a wheel."""
    return "\n".join(
        [
            '"""PEP 517 backend of an eggproxy test fixture: no build requirements."""',
            "from pathlib import Path",
            "",
            inspect.getsource(write_wheel),
            f"DIST, VERSION, MODULES = {dist!r}, {version!r}, {sorted(modules)!r}",
            "",
            "",
            "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):",
            "    files = {m: Path(m).read_bytes() for m in MODULES}",
            '    meta = Path("PKG-INFO").read_bytes()',
            "    return write_wheel(wheel_directory, DIST, VERSION, files, meta)",
            "",
            "",
            "def build_sdist(sdist_directory, config_settings=None):",
            '    raise NotImplementedError("fixture sdists are prebuilt")',
            "",
        ]
    ).encode()


def build_sdist(
    dest: Path,
    name: str,
    version: str,
    modules: dict[str, bytes],
    requires: Sequence[str] = (),
    ext: str = "tar.gz",
) -> Path:
    """Write a buildable sdist (``tar.gz`` or ``zip``) into ``dest/<canonical name>/``.

    pip builds it through an in-tree backend with ``requires = []`` (works offline, with or
    without build isolation); ``setup.py`` (setuptools) is there for legacy tools.
    """
    d = _dir(dest, name)
    base = f"{dist_name(name)}-{version}"
    packages = sorted({m.split("/")[0] for m in modules if "/" in m})
    py_modules = sorted(m.removesuffix(".py") for m in modules if "/" not in m)
    setup_py = (
        f"from setuptools import setup\n\nsetup(name={name!r}, version={version!r}, "
        f"packages={packages!r}, py_modules={py_modules!r}, install_requires={list(requires)!r})\n"
    )
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "fixture_backend"\nbackend-path = ["."]\n'
    )
    files = {
        "PKG-INFO": metadata(name, version, requires),
        "setup.py": setup_py.encode(),
        "pyproject.toml": pyproject.encode(),
        "fixture_backend.py": _backend(dist_name(name), version, list(modules)),
        **modules,
    }
    path = d / f"{base}.{ext}"
    if ext == "zip":
        _write_zip(path, {f"{base}/{n}": data for n, data in files.items()})
    elif ext == "tar.gz":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for n, data in files.items():
                ti = tarfile.TarInfo(f"{base}/{n}")
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 315532800
                tf.addfile(ti, io.BytesIO(data))
        with path.open("wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(buf.getvalue())
    else:
        raise ValueError(f"unsupported sdist extension {ext!r}")
    note(d, name, path.name)
    return path


def build_egg(dest: Path, name: str, version: str, modules: dict[str, bytes], py: str) -> Path:
    """Write a zipped egg ``<dist>-<version>-py<py>.egg`` (EGG-INFO + modules)."""
    d = _dir(dest, name)
    top = sorted({m.split("/")[0].removesuffix(".py") for m in modules})
    files = {
        **modules,
        "EGG-INFO/PKG-INFO": metadata(name, version),
        "EGG-INFO/SOURCES.txt": "".join(f"{m}\n" for m in modules).encode(),
        "EGG-INFO/top_level.txt": "".join(f"{t}\n" for t in top).encode(),
        "EGG-INFO/dependency_links.txt": b"\n",
        "EGG-INFO/zip-safe": b"\n",
    }
    path = d / f"{dist_name(name)}-{version}-py{py}.egg"
    _write_zip(path, files)
    note(d, name, path.name)
    return path


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in files.items():
            zi = zipfile.ZipInfo(n, _EPOCH)
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, zipfile.ZIP_DEFLATED)


def _mod(version: str) -> bytes:
    return f'__version__ = "{version}"\n'.encode()


# easy_install only takes an egg built for the running Python.
_PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def build_projects(dest: Path) -> dict[str, list[Path]]:
    """Write every fixture project under ``dest``; return canonical name -> distribution files.

    The returned lists hold distributions only (not ``.metadata`` files or sidecars).
    """
    demo = {v: {"demo_pkg/__init__.py": _mod(v)} for v in ("0.9", "1.0", "2.0")}
    yanked = build_wheel(dest, "demo-pkg", "0.9", demo["0.9"], ["dep-pkg"])
    note(dest / "demo-pkg", "demo-pkg", yanked.name, yanked="broken build")
    projects = {
        "demo-pkg": [
            yanked,
            build_wheel(dest, "demo-pkg", "1.0", demo["1.0"], ["dep-pkg"]),
            build_sdist(dest, "demo-pkg", "1.0", demo["1.0"], ["dep-pkg"]),
            build_wheel(dest, "demo-pkg", "2.0", demo["2.0"], ["dep-pkg"], ">=3.8"),
        ],
        "dep-pkg": [build_wheel(dest, "dep-pkg", "1.0", {"dep_pkg/__init__.py": _mod("1.0")})],
        "sdist-only": [
            build_sdist(dest, "sdist-only", "1.0", {"sdist_only.py": _mod("1.0")}),
            build_sdist(dest, "sdist-only", "1.1", {"sdist_only.py": _mod("1.1")}, ext="zip"),
        ],
        "egg-only": [build_egg(dest, "egg-only", "1.0", {"egg_only.py": _mod("1.0")}, _PY)],
        "dotted-name": [
            build_wheel(dest, "Dotted.Name", "1.0", {"dotted_name/__init__.py": _mod("1.0")})
        ],
    }
    return projects
