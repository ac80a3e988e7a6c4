"""OSV records: which versions of which PyPI project they affect."""

import json
from typing import Any

import pytest

from eggproxy.osv import InvalidRecord, record_from_json


def _record(affected: list[dict[str, Any]], **extra: Any) -> str:
    return json.dumps({"id": "MAL-2025-1", "affected": affected, **extra})


def _pkg(name: str = "Evil_Pkg", ecosystem: str = "PyPI") -> dict[str, str]:
    return {"ecosystem": ecosystem, "name": name}


def test_introduced_zero_affects_every_version() -> None:
    ranges = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
    [(name, affected)] = record_from_json(_record([{"package": _pkg(), "ranges": ranges}]))
    assert name == "evil-pkg"
    assert affected.every_version and affected.affects("1.0") and affected.affects(None)


def test_listed_versions_only() -> None:
    item = {"package": _pkg(), "versions": ["1.0", "1.1"]}
    [(_name, affected)] = record_from_json(_record([item]))
    assert affected.affects("1.0") and affected.affects("1.1.0")
    assert not affected.affects("2.0")


@pytest.mark.parametrize(
    ("events", "inside", "outside"),
    [
        ([{"introduced": "1.0"}, {"fixed": "1.2"}], ["1.0", "1.1.5"], ["0.9", "1.2"]),
        ([{"introduced": "0"}, {"last_affected": "2.0"}], ["0.1", "2.0"], ["2.0.1"]),
        ([{"introduced": "3.0"}], ["3.0", "9.9"], ["2.9"]),
    ],
)
def test_ranges_become_specifiers(
    events: list[dict[str, str]], inside: list[str], outside: list[str]
) -> None:
    item = {"package": _pkg(), "ranges": [{"type": "ECOSYSTEM", "events": events}]}
    [(_name, affected)] = record_from_json(_record([item]))
    assert all(affected.affects(v) for v in inside)
    assert not any(affected.affects(v) for v in outside)


def test_no_versions_nor_ranges_means_every_version() -> None:
    [(_name, affected)] = record_from_json(_record([{"package": _pkg()}]))
    assert affected.every_version


def test_other_ecosystems_and_withdrawn_records_are_ignored() -> None:
    assert record_from_json(_record([{"package": _pkg(ecosystem="npm")}])) == []
    withdrawn = _record([{"package": _pkg()}], withdrawn="2025-01-01T00:00:00Z")
    assert record_from_json(withdrawn) == []


@pytest.mark.parametrize("text", ["{", "[]", '{"affected": []}'])
def test_not_a_record(text: str) -> None:
    with pytest.raises(InvalidRecord):
        record_from_json(text)
