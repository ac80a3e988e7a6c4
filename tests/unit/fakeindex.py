"""A requests transport adapter that answers from a dict: a unit-test double."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import BaseAdapter
from urllib3.response import HTTPResponse

Answer = tuple[int, Mapping[str, str], bytes]


class FakeAdapter(BaseAdapter):
    """Serve canned answers; count requests per URL; optionally fail."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Answer | Callable[[requests.PreparedRequest], Answer]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[requests.PreparedRequest] = []
        self.fail: type[Exception] | None = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url is not None
        self.calls[request.url] += 1
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail("simulated failure")
        answer = self.answers.get(request.url, (404, {}, b"not found"))
        status, headers, body = answer(request) if callable(answer) else answer
        raw = HTTPResponse(
            body=io.BytesIO(body), headers=dict(headers), status=status, preload_content=False
        )
        response = requests.Response()
        response.status_code = status
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        response.raw = raw
        response.url = request.url
        response.request = request
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        return response

    def close(self) -> None:
        pass


def session_with(adapter: FakeAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
