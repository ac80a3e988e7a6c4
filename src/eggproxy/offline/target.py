"""The machine that will install: its Python, its platform, the wheel tags it accepts.

Markers (PEP 508) are evaluated for that machine and wheels chosen by its tags (PEP 425,
through :mod:`packaging.tags`), so a cache can be filled for hosts unlike this one.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from packaging import tags as wheel_tags
from packaging.markers import default_environment
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

_MANYLINUX: Final = re.compile(r"manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>.+)")
_MUSLLINUX: Final = re.compile(r"musllinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>.+)")
_MACOSX: Final = re.compile(r"macosx_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>.+)")
_LEGACY_MANYLINUX: Final = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
_WINDOWS_MACHINES: Final = {"win32": "x86", "win_amd64": "AMD64", "win_arm64": "ARM64"}


class TargetError(ValueError):
    """A ``--python-version`` or ``--platform`` that names no real target."""


def expand_platform(platform: str) -> list[str]:
    """A platform tag and the older ones it also accepts (as pip and uv do).

    PEP 600: a ``manylinux_2_28`` host runs ``manylinux_2_17`` (``manylinux2014``) wheels;
    PEP 656 likewise for musllinux; macOS 11 runs wheels built for 10.9.
    """
    for legacy, minor in _LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            platform = f"manylinux_2_{minor}_{platform.removeprefix(legacy + '_')}"
    if match := _MANYLINUX.fullmatch(platform):
        arch, top = match["arch"], int(match["minor"])
        expanded = []
        for minor in range(top, 4, -1):
            expanded.append(f"manylinux_2_{minor}_{arch}")
            expanded += [f"{n}_{arch}" for n, m in _LEGACY_MANYLINUX.items() if m == minor]
        return expanded
    if match := _MUSLLINUX.fullmatch(platform):
        arch, top = match["arch"], int(match["minor"])
        return [f"musllinux_{match['major']}_{m}_{arch}" for m in range(top, -1, -1)]
    if match := _MACOSX.fullmatch(platform):
        version = (int(match["major"]), int(match["minor"]))
        return list(wheel_tags.mac_platforms(version, match["arch"]))
    return [platform]


def _platform_markers(platform: str) -> dict[str, str]:
    """PEP 508 marker values implied by a platform tag."""
    if platform.startswith("win"):
        machine = _WINDOWS_MACHINES.get(platform, platform.removeprefix("win_"))
        return {
            "sys_platform": "win32",
            "os_name": "nt",
            "platform_system": "Windows",
            "platform_machine": machine,
        }
    if match := _MACOSX.fullmatch(platform):
        return {
            "sys_platform": "darwin",
            "os_name": "posix",
            "platform_system": "Darwin",
            "platform_machine": match["arch"],
        }
    for pattern in (_MANYLINUX, _MUSLLINUX):
        if match := pattern.fullmatch(expand_platform(platform)[0]):
            arch = match["arch"]
            break
    else:
        arch = platform.removeprefix("linux_") if platform.startswith("linux_") else ""
    if not arch:
        raise TargetError(f"unknown platform tag {platform!r}")
    return {
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "platform_machine": arch,
    }


@dataclass(frozen=True)
class Target:
    """Where the prefetched set will be installed."""

    python: Version  # the target's Python (requires-python is checked against it)
    tags: tuple[wheel_tags.Tag, ...]  # accepted wheel tags, most preferred first
    environment: dict[str, str] = field(hash=False)  # PEP 508 marker values
    all_platforms: bool = False  # keep every wheel of a chosen version

    @classmethod
    def build(
        cls,
        python_version: str | None = None,
        platforms: Sequence[str] = (),
        all_platforms: bool = False,
    ) -> Target:
        """This machine, or the Python ``X.Y`` and platform tags given."""
        environment = {key: str(value) for key, value in default_environment().items()}
        if python_version is None and not platforms:
            python = Version(environment["python_full_version"])
            return cls(python, tuple(wheel_tags.sys_tags()), environment, all_platforms)
        if python_version is None:
            major, minor = sys.version_info[:2]
        else:
            if not re.fullmatch(r"\d+\.\d+", python_version):
                raise TargetError(f"--python-version wants X.Y, not {python_version!r}")
            major, minor = (int(part) for part in python_version.split("."))
        if (major, minor) != sys.version_info[:2]:
            environment["python_version"] = f"{major}.{minor}"
            environment["python_full_version"] = f"{major}.{minor}.0"
        expanded = [p for platform in platforms for p in expand_platform(platform)]
        if platforms:
            environment |= _platform_markers(platforms[0])
        else:
            expanded = list(wheel_tags.platform_tags())
        version = (major, minor)
        accepted = [
            *wheel_tags.cpython_tags(version, platforms=expanded),
            *wheel_tags.compatible_tags(version, f"cp{major}{minor}", expanded),
        ]
        python = Version(environment["python_full_version"])
        return cls(python, tuple(dict.fromkeys(accepted)), environment, all_platforms)

    def wheel_rank(self, filename: str) -> int | None:
        """The wheel's preference (0 is best), or ``None`` if this target cannot install it."""
        try:
            wheel_tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            return None
        ranks = [self._ranks.get(tag) for tag in wheel_tags]
        known = [rank for rank in ranks if rank is not None]
        return min(known) if known else None

    @cached_property
    def _ranks(self) -> dict[wheel_tags.Tag, int]:
        return {tag: rank for rank, tag in enumerate(self.tags)}

    def accepts_python(self, requires_python: str | None) -> bool:
        """Whether a file's ``Requires-Python`` admits the target's Python."""
        if not requires_python:
            return True
        try:
            return SpecifierSet(requires_python).contains(self.python, prereleases=True)
        except InvalidSpecifier:
            return True  # as pip: an unreadable constraint does not hide the file
