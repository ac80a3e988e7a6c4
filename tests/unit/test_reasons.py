import socket
import ssl

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from eggproxy.reasons import reason


def _wrapped(cause: BaseException) -> requests.ConnectionError:
    """As requests raises it: ConnectionError(MaxRetryError(reason=NewConnectionError))."""
    inner = NewConnectionError(None, f"Failed to establish a new connection: {cause}")
    inner.__cause__ = cause
    return requests.ConnectionError(MaxRetryError(None, "/simple/", reason=inner))


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "host name not found"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
        (OSError(113, "No route to host"), "no route to host"),
        (
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
            "TLS certificate not trusted",
        ),
    ],
)
def test_reason_is_short_and_plain(cause: BaseException, expected: str) -> None:
    assert reason(_wrapped(cause)) == expected


def test_a_real_refused_connection() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(requests.RequestException) as info:
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert reason(info.value) == "connection refused"


def test_unknown_failures_say_little() -> None:
    assert reason(requests.RequestException("<object at 0x7f>")) == "connection failed"
