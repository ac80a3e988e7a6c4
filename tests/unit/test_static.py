import os
from pathlib import Path

import pytest

from eggproxy.standalone.static import Decision, Validators, decide

V = Validators(size=100, mtime=1_700_000_000.0, etag='"abc-64"', last_modified="x")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, Decision(200, 0, 100)),
        ({"if_none_match": '"abc-64"'}, Decision(304)),
        ({"if_none_match": 'W/"abc-64", "zzz"'}, Decision(304)),
        ({"if_none_match": '"other"'}, Decision(200, 0, 100)),
        ({"if_modified_since": "Tue, 14 Nov 2023 22:13:20 GMT"}, Decision(304)),
        ({"if_modified_since": "Mon, 13 Nov 2023 00:00:00 GMT"}, Decision(200, 0, 100)),
        ({"if_modified_since": "garbage"}, Decision(200, 0, 100)),
        ({"range_header": "bytes=0-9"}, Decision(206, 0, 10)),
        ({"range_header": "bytes=90-"}, Decision(206, 90, 100)),
        ({"range_header": "bytes=-10"}, Decision(206, 90, 100)),
        ({"range_header": "bytes=95-200"}, Decision(206, 95, 100)),
        ({"range_header": "bytes=100-"}, Decision(416)),
        ({"range_header": "bytes=0-1,5-6"}, Decision(200, 0, 100)),
        ({"range_header": "items=0-1"}, Decision(200, 0, 100)),
        ({"range_header": "bytes=0-9", "if_range": '"old"'}, Decision(200, 0, 100)),
        ({"range_header": "bytes=0-9", "if_range": '"abc-64"'}, Decision(206, 0, 10)),
        # Hostile or malformed ranges are ignored (RFC 9110), never an error.
        ({"range_header": "bytes=abc-5"}, Decision(200, 0, 100)),
        ({"range_header": "bytes=5-abc"}, Decision(200, 0, 100)),
        ({"range_header": "bytes=\u00b2-5"}, Decision(200, 0, 100)),
        ({"range_header": "bytes=-"}, Decision(200, 0, 100)),
    ],
)
def test_decide(kwargs: dict[str, str], expected: Decision) -> None:
    assert decide(V, **kwargs) == expected


def test_validators_from_stat(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    v = Validators.from_stat(path.stat())
    assert v.size == 5
    assert v.etag.startswith('"') and v.etag.endswith('-5"')
    assert v.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_suffix_range_of_an_empty_file_is_unsatisfiable() -> None:
    empty = Validators(size=0, mtime=0.0, etag='"0-0"', last_modified="x")
    assert decide(empty, range_header="bytes=-5") == Decision(416)
