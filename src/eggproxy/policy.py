"""What is offered of a stored page: the one place that filters it.

The cache keeps what the source said (the stored upstream copy, with files
the upstream stopped listing kept and marked ``removed`` while they are
cached); the pages clients get are rendered from :func:`offered`, so both
front ends and both formats agree.  A file that is not offered is also moved
out of the URL space (``Cache.withhold``), so that a static server in front
never serves it either.
"""

from __future__ import annotations

from dataclasses import replace

from eggproxy.config import Config
from eggproxy.model import DistFile, ProjectPage, ProjectStatus


def offered(page: ProjectPage, config: Config) -> ProjectPage:
    """The page as clients see it."""
    if page.status is ProjectStatus.QUARANTINED:
        # PEP 792: an index offers no distribution of a quarantined project.
        return replace(page, files=(), versions=None)
    if config.serve_removed:
        return page
    files = tuple(f for f in page.files if not f.removed)
    if len(files) == len(page.files):
        return page
    return replace(page, files=files, versions=None)


def withheld_reason(page: ProjectPage | None, dist: DistFile | None) -> str | None:
    """Why a cached file is not offered (``None``: it is, or we do not know it)."""
    if page is not None and page.status is ProjectStatus.QUARANTINED:
        reason = f": {page.status_reason}" if page.status_reason else ""
        return f"the project is quarantined upstream (PEP 792){reason}"
    if dist is not None and dist.removed:
        return f"removed from the upstream index on {dist.removed[:10]}"
    return None
