"""pip requirements files, read as :class:`packaging.requirements.Requirement` lines.

Only what a resolution needs: one requirement per line, ``#`` comments, blank lines,
backslash continuations and ``-r``/``--requirement`` includes (relative to the including
file).  Per-requirement ``--hash`` options are accepted and left to the installing pip,
which checks them.  Any other option (``--index-url``, ``-e``, ``-c``...) is refused: the
index is eggproxy's own sources, and editable or URL requirements cannot come from an index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement

# pip's rule: a comment starts at a "#" at the start of a line or after whitespace.
_COMMENT: Final = re.compile(r"(^|\s+)#.*$")
_INCLUDE: Final = re.compile(r"(?:-r|--requirement)(?:\s*=\s*|\s+|(?=[^\s-]))(?P<path>\S+)$")
_HASH_OPTION: Final = re.compile(r"\s+--hash[=\s]\S+")


class RequirementsFileError(ValueError):
    """A line of a requirements file that eggproxy cannot use."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Line:
    """A requirement and where it was written (for error messages)."""

    requirement: Requirement
    origin: str  # "file:line"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments removed and continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((start, (pending + line).strip()))
        pending = ""
    if pending:
        lines.append((start, pending.strip()))
    return [(number, line) for number, line in lines if line]


def read_requirements(path: Path, _seen: frozenset[Path] = frozenset()) -> list[Line]:
    """Every requirement of ``path`` and the files it includes, in order."""
    resolved = path.resolve()
    if resolved in _seen:
        return []  # pip follows a cycle once too
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RequirementsFileError(path, 0, f"cannot read: {exc}") from None
    found: list[Line] = []
    for number, line in _logical_lines(text):
        include = _INCLUDE.match(line)
        if include:
            found += read_requirements(path.parent / include["path"], _seen | {resolved})
            continue
        line = _HASH_OPTION.sub("", line)
        if line.startswith("-"):
            option = line.split()[0].split("=")[0]
            raise RequirementsFileError(path, number, f"option {option} is not supported here")
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]  # packaging adds the line and a caret below
            raise RequirementsFileError(path, number, f"invalid requirement: {reason}") from None
        if requirement.url:
            raise RequirementsFileError(
                path, number, f"{requirement.name}: a URL requirement cannot come from an index"
            )
        found.append(Line(requirement, f"{path}:{number}"))
    return found
