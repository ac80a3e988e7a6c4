"""PEP 691 media types, in one place: what we ask upstreams for and what we answer.

A page exists in two formats (:data:`Format`): ``"html"`` (PEP 503) and
``"json"`` (PEP 691).  Clients choose by ``Accept`` (:func:`choose_format`);
we ask upstreams for JSON first (:data:`UPSTREAM_ACCEPT`).
"""

from __future__ import annotations

from typing import Final, Literal

Format = Literal["html", "json"]
FORMATS: Final[tuple[Format, ...]] = ("html", "json")

JSON_V1: Final = "application/vnd.pypi.simple.v1+json"
HTML_V1: Final = "application/vnd.pypi.simple.v1+html"

# The types a client may name, with the format each one is served from.
JSON_TYPES: Final = (JSON_V1, "application/vnd.pypi.simple.latest+json")
HTML_TYPES: Final = (HTML_V1, "application/vnd.pypi.simple.latest+html", "text/html")

# What we answer with, per format.
CONTENT_TYPES: Final[dict[Format, str]] = {
    "json": JSON_V1,
    "html": "text/html; charset=utf-8",
}

# PEP 691: ask for JSON, accept HTML from an index that only speaks PEP 503.
UPSTREAM_ACCEPT: Final = f"{JSON_V1}, {HTML_V1};q=0.2, text/html;q=0.01"


def is_json_content_type(content_type: str) -> bool:
    """Whether a response's ``Content-Type`` is PEP 691 JSON (any major-1 variant)."""
    return content_type.split(";")[0].strip().lower() == JSON_V1


def choose_format(accept: str | None) -> tuple[Format, str]:
    """PEP 691 negotiation: return the format to serve and its Content-Type.

    No ``Accept`` (or nothing we offer accepted) gets HTML, the format every
    client understands; among equal quality values JSON wins, as its clients
    asked for it by name.
    """
    if not accept:
        return "html", CONTENT_TYPES["html"]
    best: tuple[float, int, Format, str] | None = None
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        candidate: tuple[float, int, Format, str]
        if media in JSON_TYPES:
            candidate = (quality, 2, "json", CONTENT_TYPES["json"])
        elif media in HTML_TYPES:
            content_type = CONTENT_TYPES["html"] if media == "text/html" else media
            candidate = (quality, 1, "html", content_type)
        elif media in ("*/*", "text/*"):
            candidate = (quality, 0, "html", CONTENT_TYPES["html"])
        else:
            continue
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    if best is None:
        return "html", CONTENT_TYPES["html"]
    return best[2], best[3]
