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
write the same bytes (compact separators, non-ASCII as UTF-8, keys in
insertion order), so a page written by one front end and read or served by
another is the same page.
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
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _std_loads(text: str | bytes) -> Any:
    return json.loads(text)


def _fast_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses what json accepts (lone surrogates, integers past 64 bits, NaN):
        # the standard parser decides, so both front ends take the same pages.
        return json.loads(text)


dumps: Callable[[Any], bytes] = _std_dumps if orjson is None else orjson.dumps
"""``data`` as compact UTF-8 JSON (raises ``TypeError``/``ValueError`` on what JSON cannot hold)."""

loads: Callable[[str | bytes], Any] = _std_loads if orjson is None else _fast_loads
"""Parse JSON text (raises ``ValueError`` when it is not JSON)."""
