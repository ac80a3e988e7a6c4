"""The domain model of a simple index: what a project page says, format-free.

Parsers (:mod:`eggproxy.parse`) build these from PEP 503 HTML or PEP 691
JSON; renderers (:mod:`eggproxy.render`) write both formats from them, so
every attribute the upstream gave survives the trip.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

# DistFile fields eggproxy itself sets on a parsed file (DistFile.marked).
_MARKS: Final = frozenset({"source", "removed", "first_seen"})


class ProjectStatus(enum.Enum):
    """PEP 792 project status markers (no marker: active)."""

    ACTIVE = "active"
    ARCHIVED = "archived"  # no new releases expected; files still offered
    QUARANTINED = "quarantined"  # unsafe (malware): an index offers no file of it
    DEPRECATED = "deprecated"  # obsolete; files still offered


@dataclass(frozen=True)
class DistFile:
    """One file on a project page (PEP 503/691 plus PEP 592, 658, 700, 714)."""

    filename: str
    url: str  # absolute upstream URL, without fragment
    hashes: Mapping[str, str] = field(default_factory=dict)
    requires_python: str | None = None
    # PEP 592: False, True (no reason given) or the reason.
    yanked: bool | str = False
    # PEP 658/714: False, True (available, no hash) or {hash name: digest}.
    core_metadata: bool | Mapping[str, str] = False
    gpg_sig: bool | None = None
    size: int | None = None  # PEP 700
    upload_time: str | None = None  # PEP 700, ISO 8601 as the upstream wrote it
    source: str | None = None  # the configured source that listed it
    # When the upstream stopped listing it (ISO 8601); kept while it is cached.
    removed: str | None = None
    # PEP 740: the URL of its provenance object (absolute upstream URL), if any.
    provenance: str | None = None
    # When eggproxy first saw it (ISO 8601): the release time of a file whose
    # source gives no upload time, so that lacking a date never lets it pass.
    first_seen: str | None = None

    @property
    def released(self) -> str | None:
        """When it was released, as far as eggproxy can tell."""
        return self.upload_time or self.first_seen

    @property
    def metadata_url(self) -> str:
        """PEP 658: the metadata file sits beside the file."""
        return self.url + ".metadata"

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> DistFile:
        """Build from a dict that names every field: a parser's path, once a listed file.

        The frozen ``__init__`` sets each field through ``object.__setattr__``,
        half of a file's parse (issue 13); the dict becomes the instance's own.
        """
        if values.keys() != _FIELDS:
            raise TypeError(f"fields of DistFile expected, got {sorted(values)}")
        dist = object.__new__(cls)
        object.__setattr__(dist, "__dict__", values)
        return dist

    def marked(self, **marks: str | None) -> DistFile:
        """A copy with eggproxy's own marks (``source``, ``removed``, ``first_seen``) set.

        ``dataclasses.replace`` reads the fields and runs the frozen ``__init__``: ~15 µs
        a file, and a page miss marks every file of the page (issue 13).  The marks are
        plain strings, so a copy of the instance's dict is the same value.
        """
        if not marks.keys() <= _MARKS:  # a subset test builds no set (issue 13)
            raise TypeError(f"not a mark: {', '.join(sorted(marks.keys() - _MARKS))}")
        state = self.__dict__ | marks
        copy = object.__new__(DistFile)
        object.__setattr__(copy, "__dict__", state)
        return copy


_FIELDS: Final = frozenset(f.name for f in fields(DistFile))


@dataclass(frozen=True)
class ProjectPage:
    """A project's page: its files and the page-level metadata."""

    name: str  # the name as the upstream displays it
    files: tuple[DistFile, ...] = ()
    versions: tuple[str, ...] | None = None  # PEP 700
    tracks: tuple[str, ...] = ()  # PEP 708
    alternate_locations: tuple[str, ...] = ()  # PEP 708
    last_serial: int | None = None
    sources: tuple[str, ...] = ()  # the configured source(s) that provided the page
    status: ProjectStatus | None = None  # PEP 792; None: no marker given
    status_reason: str | None = None  # PEP 792, free text for people
    # Offered pages only (eggproxy.policy): files each rule removed, and when
    # the next held file will be listed (ISO 8601).
    withheld: tuple[tuple[str, int], ...] = ()
    next_release: str | None = None

    def file(self, filename: str) -> DistFile | None:
        """Return the file called ``filename``, if the page lists it."""
        for dist in self.files:
            if dist.filename == filename:
                return dist
        return None


# A project on the root page: its name as displayed, and its PEP 691 ``_last-serial``.
IndexEntry = tuple[str, int | None]


@dataclass(frozen=True)
class IndexPage:
    """The root page: every project name the index lists."""

    projects: tuple[str, ...] = ()
    last_serial: int | None = None
