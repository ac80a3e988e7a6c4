"""OSV records of malicious packages: JSON in, which versions of which project they affect.

Pure: :func:`record_from_json` reads one record (the OSV schema, as the
OpenSSF malicious-packages repository writes them, ``MAL-*.json`` under
``osv/malicious/pypi/``); fetching and folder walking are in
:mod:`eggproxy.blocklist`.  Only ``PyPI`` entries count.  Versions are
compared with ``packaging``: OSV's ``ECOSYSTEM`` ranges for PyPI are PEP 440
versions, turned here into specifier sets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from eggproxy.names import NormalizedName


class InvalidRecord(ValueError):
    """A file that is not an OSV record we can use."""


@dataclass(frozen=True)
class Affected:
    """What one record says of one project."""

    record: str  # the OSV id, e.g. MAL-2024-1234
    versions: frozenset[str] = frozenset()  # listed versions, as written
    ranges: tuple[SpecifierSet, ...] = ()
    every_version: bool = False  # the whole project is malicious

    def affects(self, version: str | None) -> bool:
        """Whether a file of ``version`` (``None``: unreadable from its name) is affected."""
        if self.every_version:
            return True
        if version is None:
            # A file whose version cannot be told from its name may be the bad one.
            return True
        if version in self.versions:
            return True
        try:
            parsed = Version(version)
        except InvalidVersion:
            return False
        if any(_same(parsed, listed) for listed in self.versions):
            return True
        return any(spec.contains(parsed, prereleases=True) for spec in self.ranges)


def _same(version: Version, listed: str) -> bool:
    try:
        return Version(listed) == version
    except InvalidVersion:
        return False


def record_from_json(text: str | bytes) -> list[tuple[NormalizedName, Affected]]:
    """The PyPI projects one OSV record affects (empty for a withdrawn record)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRecord(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise InvalidRecord("not an OSV record: no id")
    if data.get("withdrawn"):
        return []
    record: str = data["id"]
    found = []
    for item in data.get("affected") or []:
        if not isinstance(item, dict):
            continue
        package = item.get("package") or {}
        if not isinstance(package, dict) or package.get("ecosystem") != "PyPI":
            continue
        name = package.get("name")
        if not isinstance(name, str) or not name:
            continue
        found.append((canonicalize_name(name), _affected(record, item)))
    return found


def _affected(record: str, item: dict[str, Any]) -> Affected:
    versions = frozenset(str(v) for v in item.get("versions") or [] if isinstance(v, str))
    ranges: list[SpecifierSet] = []
    every = False
    for entry in item.get("ranges") or []:
        if not isinstance(entry, dict) or entry.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        for spec in _specifiers(entry.get("events") or []):
            if spec is None:
                every = True
            else:
                ranges.append(spec)
    # OSV: a package entry with neither versions nor ranges affects every version.
    if not versions and not ranges and not item.get("ranges"):
        every = True
    return Affected(record, versions, tuple(ranges), every)


def _specifiers(events: list[Any]) -> list[SpecifierSet | None]:
    """OSV range events as specifier sets (``None``: every version)."""
    found: list[SpecifierSet | None] = []
    lower: str | None = None
    for event in events:
        if not isinstance(event, dict):
            continue
        if "introduced" in event:
            lower = str(event["introduced"])
            continue
        if lower is None:
            continue
        for key, op in (("fixed", "<"), ("limit", "<"), ("last_affected", "<=")):
            if key in event:
                found.append(_spec(lower, f"{op}{event[key]}"))
                lower = None
                break
    if lower is not None:  # introduced, never fixed
        found.append(None if lower == "0" else _spec(lower, ""))
    return found


def _spec(lower: str, upper: str) -> SpecifierSet | None:
    parts = [] if lower == "0" else [f">={lower}"]
    if upper:
        parts.append(upper)
    if not parts:
        return None
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        # Not a PEP 440 version: treat the range as covering everything (fail closed).
        return None
