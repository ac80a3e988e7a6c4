"""The policy: cooldown, deny, blocklist, removed files, quarantine, in one view."""

import json
import os
from pathlib import Path
from typing import Any

from eggproxy.blocklist import Blocklist
from eggproxy.config import Config, SourceConfig
from eggproxy.model import DistFile, ProjectPage
from eggproxy.policy import Policy, iso, parse_time
from eggproxy.render import project_html, project_json

NOW = parse_time("2026-06-01T00:00:00Z") or 0.0
DAY = 86400.0
OLD = DistFile("demo_pkg-1.0.tar.gz", "https://f.test/1", upload_time="2020-01-01T00:00:00Z")
NEW = DistFile("demo_pkg-2.0.tar.gz", "https://f.test/2", upload_time=iso(NOW - 3600))
PAGE = ProjectPage("demo-pkg", (OLD, NEW), versions=("1.0", "2.0"))


def _config(**settings: Any) -> Config:
    return Config(cache_dir=Path("/nonexistent"), index="https://up.test/simple/", **settings)


def test_no_rule_offers_everything() -> None:
    view = Policy(_config()).view(PAGE, NOW)
    assert view.page is PAGE and view.withheld == {} and view.next_release is None


def test_a_cooldown_holds_new_files_and_recomputes_versions() -> None:
    view = Policy(_config(min_release_age=7 * DAY)).view(PAGE, NOW)
    assert [f.filename for f in view.page.files] == [OLD.filename]
    assert view.page.versions is None  # PEP 700: recomputed from what is listed
    assert project_json(view.page)["versions"] == ["1.0"]
    held = view.withheld[NEW.filename]
    assert held.rule == "min_release_age" and held.until == NOW - 3600 + 7 * DAY
    assert held.reason == f"held back until {iso(NOW - 3600 + 7 * DAY)} (min_release_age)"
    assert view.next_release == held.until
    meta = project_json(view.page)["meta"]
    assert meta["_withheld"] == {"min_release_age": 1}
    assert meta["_next-release"] == iso(held.until)
    assert b"<!-- withheld by policy: min_release_age 1; next release" in project_html(view.page)


def test_the_hold_ends() -> None:
    policy = Policy(_config(min_release_age=7 * DAY))
    assert policy.view(PAGE, NOW - 3600 + 7 * DAY).page is PAGE


def test_exempt_projects_are_never_held() -> None:
    config = _config(min_release_age=7 * DAY, min_release_age_exempt=frozenset({"demo-pkg"}))
    assert Policy(config).view(PAGE, NOW).page is PAGE


def test_a_source_sets_its_own_cooldown() -> None:
    sources = (SourceConfig("up", url="https://up.test/simple/", min_release_age=0.0),)
    page = ProjectPage(
        "demo-pkg",
        tuple(
            DistFile(f.filename, f.url, upload_time=f.upload_time, source="up") for f in (OLD, NEW)
        ),
    )
    assert Policy(_config(min_release_age=7 * DAY, sources=sources)).view(page, NOW).withheld == {}


def test_without_an_upload_time_the_first_sight_counts() -> None:
    undated = DistFile("demo_pkg-3.0.tar.gz", "https://f.test/3", first_seen=iso(NOW - 60))
    page = ProjectPage("demo-pkg", (undated,))
    view = Policy(_config(min_release_age=DAY)).view(page, NOW)
    assert view.withheld[undated.filename].until == NOW - 60 + DAY
    never_seen = DistFile("demo_pkg-4.0.tar.gz", "https://f.test/4")
    view = Policy(_config(min_release_age=DAY)).view(ProjectPage("demo-pkg", (never_seen,)), NOW)
    assert view.page.files == ()  # no date at all: held


def test_deny_blocks_a_version_or_a_project() -> None:
    view = Policy(_config(deny=(("demo-pkg", "2.0"),))).view(PAGE, NOW)
    assert [f.filename for f in view.page.files] == [OLD.filename]
    assert view.withheld[NEW.filename].blocked
    everything = Policy(_config(deny=(("demo-pkg", None),))).view(PAGE, NOW)
    assert everything.page.files == ()


def _osv(folder: Path, record: str, name: str, **affected: Any) -> None:
    data = {
        "id": record,
        "affected": [{"package": {"ecosystem": "PyPI", "name": name}, **affected}],
    }
    (folder / f"{record}.json").write_text(json.dumps(data))


def test_a_blocklist_record_blocks_and_is_named(tmp_path: Path) -> None:
    _osv(tmp_path, "MAL-2026-7", "Demo.Pkg", versions=["2.0"])
    blocklist = Blocklist(tmp_path)
    blocklist.load()
    policy = Policy(_config(blocklist=tmp_path), blocklist)
    view = policy.view(PAGE, NOW)
    assert [f.filename for f in view.page.files] == [OLD.filename]
    why = view.withheld[NEW.filename]
    assert why.record == "MAL-2026-7" and why.reason == "blocked: MAL-2026-7 (blocklist)"
    assert policy.names("demo-pkg") and not policy.names("other")


def test_the_blocklist_reloads_when_its_folder_changes(tmp_path: Path) -> None:
    now = [0.0]
    blocklist = Blocklist(tmp_path, clock=lambda: now[0])
    assert blocklist.load() == set()
    fingerprint = blocklist.fingerprint
    _osv(
        tmp_path,
        "MAL-2026-8",
        "evil",
        ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
    )
    os.utime(tmp_path, (1, 1))  # a change the stamp sees, however coarse the clock
    assert blocklist.reload_if_changed() is None  # looked at moments ago
    now[0] += 10
    assert blocklist.reload_if_changed() == {"evil"}
    assert blocklist.fingerprint != fingerprint
    now[0] += 10
    assert blocklist.reload_if_changed() is None  # unchanged


def test_the_fingerprint_follows_the_settings() -> None:
    base = Policy(_config()).fingerprint()
    assert base == Policy(_config()).fingerprint()
    assert Policy(_config(min_release_age=DAY)).fingerprint() != base
    assert Policy(_config(deny=(("x", None),))).fingerprint() != base
