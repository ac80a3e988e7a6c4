"""What is offered of a stored page: the one place that filters it.

The cache keeps what the source said (the stored upstream copy, with files
the upstream stopped listing kept and marked ``removed`` while they are
cached); the pages clients get are rendered from :meth:`Policy.view`, so both
front ends and both formats agree.  A file that is not offered is also moved
out of the URL space (``Cache.withhold``), so that a static server in front
never serves it either.

The rules, in the order they are asked (the first that applies says why):

* ``quarantine``: PEP 792, the upstream quarantined the project;
* ``deny``: ``deny = NAME[==VERSION]`` in the configuration (403);
* ``blocklist``: an OSV record of the ``blocklist`` folder affects it (403);
* ``removed``: the upstream no longer lists it (unless ``serve_removed``);
* ``min_release_age``: released less than that long ago (404 until then).

Every rule is applied when answering, never when storing, so a changed
setting or a new record takes effect without fetching anything again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from packaging.utils import canonicalize_name

from eggproxy.blocklist import Blocklist, deny_names
from eggproxy.config import Config
from eggproxy.model import DistFile, ProjectPage, ProjectStatus
from eggproxy.names import NormalizedName, dist_version

Rule = Literal["quarantine", "deny", "blocklist", "removed", "min_release_age"]


@dataclass(frozen=True)
class Withheld:
    """Why a file is not offered."""

    rule: Rule
    reason: str
    until: float | None = None  # min_release_age: when it will be offered
    record: str | None = None  # blocklist/deny: the record id that blocks it

    @property
    def blocked(self) -> bool:
        """Blocked (403) rather than not offered (404)."""
        return self.rule in ("deny", "blocklist")


@dataclass(frozen=True)
class View:
    """A page as clients see it, and what was left out of it."""

    page: ProjectPage
    withheld: dict[str, Withheld]  # filename -> why
    next_release: float | None  # when the next held file will be offered


def iso(seconds: float) -> str:
    """An instant as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (PEP 700 ``upload-time``), if valid."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Policy:
    """The configured rules, and the blocklist they read."""

    def __init__(
        self,
        config: Config,
        blocklist: Blocklist | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.blocklist = blocklist
        self.clock = clock
        self._deny = deny_names(config.deny)
        self._ages = {s.name: s.min_release_age for s in config.effective_sources}
        self._local = {s.name for s in config.effective_sources if s.is_local}
        self._first = config.effective_sources[0].name

    @property
    def timed(self) -> bool:
        """Whether what is offered can change without a new fetch (a cooldown, a list)."""
        ages = [self.config.min_release_age, *(a for a in self._ages.values() if a)]
        return any(ages) or bool(self._deny) or self.blocklist is not None

    def fingerprint(self) -> str:
        """Changes whenever a setting or the blocklist's records would change a page."""
        settings = {
            "serve_removed": self.config.serve_removed,
            "min_release_age": self.config.min_release_age,
            "sources": sorted((k, v) for k, v in self._ages.items() if v is not None),
            "exempt": sorted(self.config.min_release_age_exempt),
            "deny": sorted(f"{n}=={v}" for n, v in self.config.deny),
            "blocklist": self.blocklist.fingerprint if self.blocklist else None,
        }
        data = json.dumps(settings, sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def names(self, project: NormalizedName) -> bool:
        """Whether a list (deny, blocklist) names ``project``: one dict lookup each."""
        return project in self._deny or (
            self.blocklist is not None and project in self.blocklist.records
        )

    def blocked(self, project: NormalizedName, filename: str) -> Withheld | None:
        """The deny entry or OSV record that blocks ``filename``, if any."""
        if not self.names(project):
            return None
        version = dist_version(filename)
        denied = self._deny.get(project)
        if denied is not None and (None in denied or version in denied):
            return Withheld("deny", "blocked: denied by the configuration (deny)", record="deny")
        if self.blocklist is not None:
            affected = self.blocklist.affecting(project, version)
            if affected is not None:
                reason = f"blocked: {affected.record} (blocklist)"
                return Withheld("blocklist", reason, record=affected.record)
        return None

    def why(self, page: ProjectPage, dist: DistFile, now: float) -> Withheld | None:
        """Why ``dist`` of ``page`` is not offered ``now`` (``None``: it is)."""
        return self._why(canonicalize_name(page.name), page, dist, now)

    def _why(
        self, project: NormalizedName, page: ProjectPage, dist: DistFile, now: float
    ) -> Withheld | None:
        if page.status is ProjectStatus.QUARANTINED:
            reason = f": {page.status_reason}" if page.status_reason else ""
            return Withheld("quarantine", f"the project is quarantined upstream (PEP 792){reason}")
        blocked = self.blocked(project, dist.filename)
        if blocked is not None:
            return blocked
        if dist.removed and not self.config.serve_removed:
            return Withheld("removed", f"removed from the upstream index on {dist.removed[:10]}")
        until = self.held_until(project, dist, now)
        if until is not None:
            return Withheld(
                "min_release_age", f"held back until {iso(until)} (min_release_age)", until
            )
        return None

    def held_until(self, project: NormalizedName, dist: DistFile, now: float) -> float | None:
        """When a file under the cooldown will be offered (``None``: it is now)."""
        age = self._ages.get(dist.source or self._first)
        if age is None:
            age = self.config.min_release_age
        if not age or project in self.config.min_release_age_exempt:
            return None
        # Local folders give file mtimes, which a copy can backdate: count from first sight.
        local = (dist.source or self._first) in self._local
        released = parse_time(dist.first_seen if local else dist.released)
        if released is None:
            released = parse_time(dist.first_seen)
        if released is None:  # no date at all: never a reason to let it through
            return now + age
        until = released + age
        return until if until > now else None

    def view(self, page: ProjectPage, now: float | None = None) -> View:
        """The page as clients see it ``now``."""
        now = self.clock() if now is None else now
        withheld: dict[str, Withheld] = {}
        project = canonicalize_name(page.name)  # once, not once a file
        for dist in page.files:
            why = self._why(project, page, dist, now)
            if why is not None:
                withheld[dist.filename] = why
        if page.status is ProjectStatus.QUARANTINED:
            # PEP 792: an index offers no distribution of a quarantined project.
            return View(replace(page, files=(), versions=None), withheld, None)
        if not withheld:
            return View(page, withheld, None)
        files = tuple(f for f in page.files if f.filename not in withheld)
        counts: dict[str, int] = {}
        for why in withheld.values():
            counts[why.rule] = counts.get(why.rule, 0) + 1
        holds = [w.until for w in withheld.values() if w.until is not None]
        next_release = min(holds) if holds else None
        shown = replace(
            page,
            files=files,
            versions=None,  # PEP 700: recomputed from what is listed
            withheld=tuple(sorted(counts.items())),
            next_release=iso(next_release) if next_release is not None else None,
        )
        return View(shown, withheld, next_release)


def offered(page: ProjectPage, config: Config) -> ProjectPage:
    """The page as clients see it now (without a blocklist)."""
    return Policy(config).view(page).page
