"""Project and file names: validation and normalisation, through ``packaging``.

Every name that comes from a request passes through here before it is used as
a path: a project name becomes its PEP 503 normalised form (which contains
only ``[a-z0-9-]``), and a file name must look like a distribution file and
contain nothing that could leave its directory.
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

from packaging.utils import (
    InvalidName as _PackagingInvalidName,
)
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from eggproxy.errors import InvalidName

__all__ = [
    "METADATA_SUFFIX",
    "PROVENANCE_SUFFIX",
    "DistKind",
    "NormalizedName",
    "dist_kind",
    "dist_version",
    "normalize_project",
    "split_dist_filename",
    "validate_filename",
]

MAX_PROJECT_LENGTH: Final = 200
MAX_FILENAME_LENGTH: Final = 255
# PEP 658: the core metadata of a file is served at the file's URL plus this.
METADATA_SUFFIX: Final = ".metadata"
# PEP 740: eggproxy serves a file's provenance object beside it, under this suffix.
PROVENANCE_SUFFIX: Final = ".provenance"

# Characters seen in real distribution file names (wheels, sdists, eggs and
# the legacy bdist formats); anything else is refused before it nears a path.
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~!-]*")
# Legacy formats PyPI still lists for old projects; wheels and sdists are
# recognised by packaging, eggs by their PEP 376-era naming.
LEGACY_SUFFIXES: Final = (
    ".egg",
    ".tar.bz2",
    ".tar.xz",
    ".tgz",
    ".tbz",
    ".tar",
    ".exe",
    ".msi",
    ".rpm",
    ".dmg",
    ".deb",
)
_LEADING_NAME = re.compile(r"(?P<name>[^-]+)-")
_EGG = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)(-py\d\.\d+)?(-.+)?\.egg")

DistKind = Literal["wheel", "sdist", "egg", "legacy"]


def normalize_project(name: str) -> NormalizedName:
    """Return the PEP 503 normalised form of ``name``, refusing invalid names.

    Valid names are those of the core metadata specification (letters,
    digits, ``.``, ``_`` and ``-``, starting and ending with a letter or
    digit), so the result is always safe as a single path segment.
    """
    if len(name) > MAX_PROJECT_LENGTH:
        raise InvalidName("project", name)
    try:
        return canonicalize_name(name, validate=True)
    except _PackagingInvalidName:
        raise InvalidName("project", name) from None


def dist_kind(filename: str) -> DistKind | None:
    """Classify a distribution file name, or return ``None`` if it is not one."""
    if filename.endswith(".whl"):
        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return None
        return "wheel"
    if filename.endswith((".tar.gz", ".zip")):
        try:
            parse_sdist_filename(filename)
        except InvalidSdistFilename:
            # Old sdists with pre-PEP 440 versions are still installable.
            return "legacy"
        return "sdist"
    if filename.endswith(".egg"):
        return "egg" if _EGG.fullmatch(filename) else "legacy"
    if filename.endswith(LEGACY_SUFFIXES):
        return "legacy"
    return None


@functools.lru_cache(maxsize=16384)
def split_dist_filename(filename: str) -> tuple[str, str | None] | None:
    """(project name as written, version or ``None``) read from a distribution file name.

    Remembered: packaging parses a wheel's version and tags (~12 µs), and a page
    without PEP 700 ``versions`` asks this of every file, on every rendering.
    """
    kind = dist_kind(filename)
    try:
        if kind == "wheel":
            name, version, _build, _tags = parse_wheel_filename(filename)
            return str(name), str(version)
        if kind == "sdist":
            name, version = parse_sdist_filename(filename)
            return str(name), str(version)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    egg = _EGG.fullmatch(filename) if kind == "egg" else None
    if egg:
        return egg.group("name").replace("_", "-"), egg.group("version")
    legacy = _LEADING_NAME.match(filename) if kind == "legacy" else None
    if legacy:  # old formats: trust the name, not the version
        return legacy.group("name").replace("_", "-"), None
    return None


def dist_version(filename: str) -> str | None:
    """The version a distribution file carries in its name, if it can be read."""
    split = split_dist_filename(filename)
    return split[1] if split else None


def validate_filename(filename: str) -> str:
    """Return ``filename`` if it is a safe distribution (or PEP 658/740 companion) name.

    Refuses path separators, dot segments, NUL bytes, over-long names and
    anything that is not a distribution file name.
    """
    if len(filename) > MAX_FILENAME_LENGTH or not _SAFE_FILENAME.fullmatch(filename):
        raise InvalidName("file", filename)
    base = filename.removesuffix(METADATA_SUFFIX).removesuffix(PROVENANCE_SUFFIX)
    if dist_kind(base) is None:
        raise InvalidName("file", filename)
    return filename
