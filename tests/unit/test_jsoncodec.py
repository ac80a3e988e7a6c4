"""eggproxy.jsoncodec: orjson and the standard library write the same pages."""

from __future__ import annotations

import json

import pytest

from eggproxy import jsoncodec

SAMPLES = [
    {"meta": {"api-version": "1.1", "_last-serial": 12}, "name": "démo", "files": []},
    {"a": 'é\x7f\x00\x1f\u2028\U0001f600"\\/</script>', "n": [1, -2, 3.5, 1e20, True, None]},
    {"nested": {"k": [{"x": ""}]}, "order": {"z": 1, "a": 2}},
]


@pytest.mark.parametrize("data", SAMPLES)
def test_both_codecs_write_the_same_bytes(data: object) -> None:
    assert jsoncodec.dumps(data) == jsoncodec._std_dumps(data)
    assert json.loads(jsoncodec.dumps(data)) == data


@pytest.mark.parametrize("data", SAMPLES)
def test_loads_reads_what_dumps_wrote(data: object) -> None:
    encoded = jsoncodec.dumps(data)
    assert jsoncodec.loads(encoded) == data
    assert jsoncodec.loads(encoded.decode()) == data


@pytest.mark.parametrize("text", ['{"a":"\\ud800"}', '{"n":NaN}', "[1e400]"])
def test_loads_takes_what_the_standard_parser_takes(text: str) -> None:
    # orjson refuses some of these; the standard parser decides for both front ends.
    assert repr(jsoncodec.loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "{", '{"a":}', "[1,]", "\x00"])
def test_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text)
