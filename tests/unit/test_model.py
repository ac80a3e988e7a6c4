from dataclasses import fields, replace

import pytest

from eggproxy.model import DistFile

DIST = DistFile("demo-1.0.tar.gz", "https://upstream.example.test/demo-1.0.tar.gz", {"sha256": "0"})


@pytest.mark.parametrize(
    "marks",
    [{"source": "upstream"}, {"first_seen": "2024-01-01T00:00:00Z"}, {"removed": None}],
)
def test_marked_is_replace(marks: dict[str, str | None]) -> None:
    marked = DIST.marked(**marks)
    assert marked == replace(DIST, **marks)  # type: ignore[arg-type]
    assert marked is not DIST and DIST.source is None and DIST.first_seen is None


def test_marked_refuses_what_is_not_a_mark() -> None:
    with pytest.raises(TypeError, match="not a mark: url"):
        DIST.marked(url="https://elsewhere.example.test/")
    with pytest.raises(AttributeError):  # still frozen
        DIST.marked(source="upstream").source = "other"  # type: ignore[misc]


def test_from_fields_is_the_constructor() -> None:
    values = {f.name: getattr(DIST, f.name) for f in fields(DistFile)}
    built = DistFile.from_fields(dict(values))
    assert built == DIST and repr(built) == repr(DIST)
    del values["first_seen"]
    with pytest.raises(TypeError, match="fields of DistFile expected"):
        DistFile.from_fields(values)
