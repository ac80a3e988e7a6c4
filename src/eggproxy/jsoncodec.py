"""JSON for project pages: orjson where it loads, the standard library elsewhere.

A page miss of a project with many files spends about 40 % of its CPU encoding
the two JSON copies it writes (the served PEP 691 page and the stored upstream
copy) and decoding the upstream's: 600 files, 2.3 ms a ``json.dumps`` and
1.0 ms a ``json.loads`` here, against 0.14 ms and 0.5 ms with orjson
(issue 13, docs/decisions/0014, round 6).

orjson is a compiled extension (Rust, with wheels for the usual platforms).
It also loads in a sub-interpreter such as the one mod_python runs eggproxy in
(``PythonInterpreter eggproxy``; the Apache tests install it).  Where it is not
installed (``--no-deps``, a platform with no wheel), the standard library is used.  Both
write the same bytes (compact separators, non-ASCII as UTF-8, a lone
surrogate as an escape, keys in insertion order) and read the same
values (an integer outside 64 bits as a float), so a page does not depend on
which codec wrote or read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    import orjson
except ImportError:  # installed without it
    orjson = None  # type: ignore[assignment]


def _std_dumps(data: Any) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which UTF-8 cannot hold: \u escapes
        return json.dumps(data, separators=(",", ":")).encode()


def _fast_dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an integer past 64 bits
        return _std_dumps(data)


def _int(digits: str) -> int | float:
    # orjson reads an integer outside [-2**63, 2**64) as a float: the same here.
    value = int(digits)
    return value if -(2**63) <= value < 2**64 else float(value)


def _std_loads(text: str | bytes) -> Any:
    return json.loads(text, parse_int=_int)


def _fast_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses what json accepts (lone surrogates, NaN, 1e400): the standard
        # parser decides, so a page is malformed or not whichever codec reads it.
        return _std_loads(text)


dumps: Callable[[Any], bytes] = _std_dumps if orjson is None else _fast_dumps
"""``data`` as compact UTF-8 JSON (raises ``TypeError``/``ValueError`` on what JSON cannot hold)."""

loads: Callable[[str | bytes], Any] = _std_loads if orjson is None else _fast_loads
"""Parse JSON text (raises ``ValueError`` when it is not JSON)."""
