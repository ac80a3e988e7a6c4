"""Resolution of a requirements set for a :class:`~eggproxy.offline.target.Target`.

A resolvelib provider over an :class:`Index`: the list of files of a project and the core
metadata of one file.  Candidates are the versions that have a wheel the target accepts or
an sdist; dependencies come from the wheel's metadata (PEP 658 file, or the wheel's own
METADATA), or from an sdist's PKG-INFO when it is metadata 2.2+ and does not declare
``Requires-Dist`` dynamic (PEP 643); otherwise the sdist is kept but not resolved further.
As pip does: newest version first, yanked files only when pinned with ``==`` (PEP 592),
pre-releases only when asked for or when nothing else matches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, Resolver
from resolvelib.resolvers import ResolutionTooDeep
from resolvelib.structs import RequirementInformation

from eggproxy.model import DistFile
from eggproxy.names import NormalizedName, dist_kind, dist_version
from eggproxy.offline.target import Target

log = logging.getLogger(__name__)

MAX_ROUNDS = 20000


class Index(Protocol):
    """Where the resolver reads projects from (eggproxy's own sources, or a test's dict)."""

    def files(self, project: NormalizedName) -> Sequence[DistFile]:
        """The files a project's page lists; empty if there is no such project."""
        ...

    def metadata(self, project: NormalizedName, dist: DistFile) -> bytes:
        """The core metadata of ``dist`` (a wheel's METADATA or an sdist's PKG-INFO)."""
        ...


class ResolutionFailed(Exception):
    """No set of versions satisfies the requirements; the message says which conflict."""


@dataclass(frozen=True)
class Candidate:
    """One version of a project (with extras, if asked for) and the files it needs."""

    name: NormalizedName
    version: Version
    extras: frozenset[str]
    files: tuple[DistFile, ...]  # what the target installs from: wheels, else the sdist
    source: DistFile  # the file whose metadata gives the dependencies

    def __str__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras} {self.version}"


@dataclass(frozen=True)
class Resolution:
    """The chosen version of every project, and what could not be followed."""

    chosen: tuple[Candidate, ...]  # one per project (extras folded into the plain one)
    warnings: tuple[str, ...]


def identify(name: str, extras: Iterable[str]) -> str:
    extras = sorted(canonicalize_name(e) for e in extras)
    return f"{canonicalize_name(name)}[{','.join(extras)}]" if extras else canonicalize_name(name)


def dependencies_of(metadata: bytes, from_sdist: bool) -> list[Requirement] | None:
    """The ``Requires-Dist`` of core metadata; ``None`` when an sdist's cannot be trusted."""
    raw, _unparsed = parse_email(metadata)
    if from_sdist:
        try:
            version = Version(raw.get("metadata_version", "1.0"))
        except InvalidVersion:
            return None
        dynamic = {field.lower() for field in raw.get("dynamic", [])}
        # PEP 643: only metadata 2.2+ says which fields the build may still change.
        if version < Version("2.2") or "requires-dist" in dynamic:
            return None
    requirements = []
    for line in raw.get("requires_dist", []):
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement:
            log.warning("ignoring invalid Requires-Dist %r", line)
    return requirements


def _pins(requirements: Iterable[Requirement]) -> set[Version]:
    pins = set()
    for requirement in requirements:
        for spec in requirement.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                try:
                    pins.add(Version(spec.version))
                except InvalidVersion:
                    continue
    return pins


class Provider(AbstractProvider[Requirement, Candidate, str]):
    """resolvelib's view of an :class:`Index` for one target."""

    def __init__(self, index: Index, target: Target) -> None:
        self.index = index
        self.target = target
        self.warnings: list[str] = []
        self.missing: set[str] = set()
        self._versions: dict[NormalizedName, dict[Version, list[DistFile]]] = {}
        self._dependencies: dict[tuple[NormalizedName, Version], list[Requirement]] = {}

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        return identify(requirement_or_candidate.name, requirement_or_candidate.extras)

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[RequirementInformation[Requirement, Candidate]]],
        backtrack_causes: Sequence[RequirementInformation[Requirement, Candidate]],
    ) -> tuple[bool, int, str]:
        # Conflicting projects first, then the most constrained: fewer rounds of backtracking.
        causes = {self.identify(cause.requirement) for cause in backtrack_causes}
        return (identifier not in causes, sum(1 for _ in candidates[identifier]), identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Requirement]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> list[Candidate]:
        wanted = list(requirements[identifier])
        name = canonicalize_name(wanted[0].name)
        extras = frozenset(canonicalize_name(e) for r in wanted for e in r.extras)
        excluded = {c.version for c in incompatibilities[identifier]}
        pins = _pins(wanted)
        versions = self._project(name)
        allowed = set(versions) - excluded
        for requirement in wanted:
            allowed &= set(requirement.specifier.filter(versions))
        matches = []
        for version in sorted(allowed, reverse=True):
            # PEP 592: a yanked file is only for those who pin its version exactly.
            files = [f for f in versions[version] if not f.yanked or version in pins]
            candidate = self._candidate(name, version, extras, files)
            if candidate is not None:
                matches.append(candidate)
        return matches

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        requirements = self._requirements(candidate)
        environment = self.target.environment
        if not candidate.extras:
            return [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]
        # As pip: the extras' candidate depends on the plain one of the same version.
        chosen = [Requirement(f"{candidate.name}=={candidate.version}")]
        for requirement in requirements:
            marker = requirement.marker
            if marker is not None and any(
                marker.evaluate({**environment, "extra": extra}) for extra in candidate.extras
            ):
                chosen.append(requirement)
        return chosen

    # --- index ------------------------------------------------------------------

    def _project(self, name: NormalizedName) -> dict[Version, list[DistFile]]:
        versions = self._versions.get(name)
        if versions is not None:
            return versions
        versions = {}
        files = self.index.files(name)
        if not files:
            self.missing.add(name)
        for dist in files:
            if dist_kind(dist.filename) not in ("wheel", "sdist"):
                continue  # eggs and legacy formats: pip does not install them
            if not self.target.accepts_python(dist.requires_python):
                continue
            try:
                version = Version(dist_version(dist.filename) or "")
            except InvalidVersion:
                continue
            versions.setdefault(version, []).append(dist)
        self._versions[name] = versions
        return versions

    def _candidate(
        self, name: NormalizedName, version: Version, extras: frozenset[str], files: list[DistFile]
    ) -> Candidate | None:
        ranked = sorted(
            (rank, dist.filename, dist)
            for dist in files
            if dist.filename.endswith(".whl")
            and (rank := self.target.wheel_rank(dist.filename)) is not None
        )
        compatible = [dist for _rank, _name, dist in ranked]
        # The .tar.gz of PEP 625 first, then any older .zip.
        sdists = sorted(
            (f for f in files if dist_kind(f.filename) == "sdist"),
            key=lambda f: not f.filename.endswith(".tar.gz"),
        )
        if not compatible and not sdists:
            return None
        if self.target.all_platforms:
            fetched = [f for f in files if f.filename.endswith(".whl")]
        else:
            fetched = list(compatible)
        if not compatible:
            fetched.append(sdists[0])
        source = compatible[0] if compatible else sdists[0]
        return Candidate(name, version, extras, tuple(fetched), source)

    def _requirements(self, candidate: Candidate) -> list[Requirement]:
        key = (candidate.name, candidate.version)
        found = self._dependencies.get(key)
        if found is not None:
            return found
        is_sdist = not candidate.source.filename.endswith(".whl")
        metadata = self.index.metadata(candidate.name, candidate.source)
        requirements = dependencies_of(metadata, from_sdist=is_sdist)
        if requirements is None:
            requirements = []
            self.warnings.append(
                f"{candidate.name} {candidate.version}: not resolved further "
                f"({candidate.source.filename} has no static Requires-Dist, PEP 643)"
            )
        for requirement in requirements:
            if requirement.url:
                self.warnings.append(f"{candidate}: skipped URL dependency {requirement.name}")
        requirements = [r for r in requirements if not r.url]
        self._dependencies[key] = requirements
        return requirements


def _explain(
    exc: ResolutionImpossible[Requirement, Candidate], missing: set[str], origins: dict[int, str]
) -> str:
    causes = list(exc.causes)
    if not causes:
        return "no solution"

    def where(cause: RequirementInformation[Requirement, Candidate]) -> str:
        if cause.parent is not None:
            return f"{cause.requirement} (required by {cause.parent})"
        return f"{cause.requirement} ({origins.get(id(cause.requirement), 'requested')})"

    name = canonicalize_name(causes[0].requirement.name)
    described = list(dict.fromkeys(where(cause) for cause in causes))
    if name in missing:
        return f"no project {name} on the index: {', '.join(described)}"
    if len(described) == 1:
        return f"no version of {name} matches {described[0]}"
    return f"conflicting requirements on {name}: {' and '.join(described)}"


def resolve(
    index: Index, target: Target, requirements: Sequence[tuple[Requirement, str]]
) -> Resolution:
    """Choose a version of every project ``requirements`` need (with their origins)."""
    wanted = [
        (r, origin)
        for r, origin in requirements
        if r.marker is None or r.marker.evaluate(target.environment)
    ]
    provider = Provider(index, target)
    resolver: Resolver[Requirement, Candidate, str] = Resolver(provider, BaseReporter())
    origins = {id(r): origin for r, origin in wanted}
    try:
        result = resolver.resolve([r for r, _origin in wanted], max_rounds=MAX_ROUNDS)
    except ResolutionImpossible as exc:
        raise ResolutionFailed(_explain(exc, provider.missing, origins)) from None
    except ResolutionTooDeep:
        raise ResolutionFailed(f"gave up after {MAX_ROUNDS} rounds of backtracking") from None
    chosen: dict[NormalizedName, Candidate] = {}
    for candidate in result.mapping.values():
        chosen.setdefault(candidate.name, candidate)
    ordered = tuple(chosen[name] for name in sorted(chosen))
    return Resolution(ordered, tuple(dict.fromkeys(provider.warnings)))
