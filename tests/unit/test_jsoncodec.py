"""eggproxy.jsoncodec: orjson and the standard library write the same pages."""

from __future__ import annotations

import json

import pytest

from eggproxy import jsoncodec

SAMPLES = [
    {"meta": {"api-version": "1.1", "_last-serial": 12}, "name": "démo", "files": []},
    {"a": 'é\x7f\x00\x1f\u2028\U0001f600"\\/</script>', "n": [1, -2, 3.5, 1e20, True, None]},
    {"nested": {"k": [{"x": ""}]}, "order": {"z": 1, "a": 2}},
    {"lone surrogate": "\ud800", "big": 2**64, "small": -(2**63) - 1},
]


@pytest.mark.parametrize("data", SAMPLES)
def test_both_codecs_write_the_same_bytes(data: object) -> None:
    assert jsoncodec.dumps(data) == jsoncodec._std_dumps(data)
    assert json.loads(jsoncodec.dumps(data)) == data


@pytest.mark.parametrize("data", SAMPLES[:3])
def test_loads_reads_what_dumps_wrote(data: object) -> None:
    encoded = jsoncodec.dumps(data)
    assert jsoncodec.loads(encoded) == data
    assert jsoncodec.loads(encoded.decode()) == data


def test_a_lone_surrogate_is_written_escaped() -> None:
    assert jsoncodec.dumps({"t": "a\ud800"}) == b'{"t":"a\\ud800"}'


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("18446744073709551615", 2**64 - 1),
        ("-9223372036854775808", -(2**63)),
        ("18446744073709551616", float(2**64)),
        ("-9223372036854775809", float(-(2**63) - 1)),
    ],
)
def test_both_codecs_read_integers_alike(text: str, value: float) -> None:
    for loads in (jsoncodec.loads, jsoncodec._std_loads):
        got = loads(text)
        assert (type(got), got) == (type(value), value)


@pytest.mark.parametrize("text", ['{"a":"\\ud800"}', '{"n":NaN}', "[1e400]"])
def test_loads_takes_what_the_standard_parser_takes(text: str) -> None:
    # orjson refuses some of these; the standard parser decides, whichever codec reads.
    assert repr(jsoncodec.loads(text)) == repr(json.loads(text))
    assert repr(jsoncodec._std_loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "{", '{"a":}', "[1,]", "\x00"])
def test_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text)
