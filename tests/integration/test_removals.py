"""Files removed upstream leave the cache's URL space, on both front ends (issue 10)."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import FrontEnd
from tests.integration.upstream import Upstream

pytestmark = pytest.mark.integration

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
TIMEOUT = 60.0


@pytest.mark.proxy_options(index_ttl=1, extra_config="stale_while_revalidate = 0\n")
def test_a_removed_file_is_no_longer_listed_nor_served(proxy: FrontEnd, upstream: Upstream) -> None:
    page = proxy.url + "demo-pkg/"
    assert requests.get(page, timeout=TIMEOUT).status_code == 200
    assert requests.get(page + WHEEL, timeout=TIMEOUT).status_code == 200
    assert (proxy.cache_dir / "demo-pkg" / WHEEL).exists()
    del upstream.projects["demo-pkg"][WHEEL]
    # Past index_ttl, and past nginx's whole-second clock (docs/decisions/0005).
    time.sleep(2.2)
    listed = requests.get(page, timeout=TIMEOUT)
    assert listed.status_code == 200 and WHEEL not in listed.text
    hits = upstream.hits[upstream.file_path(WHEEL, "x" * 64)]
    gone = requests.get(page + WHEEL, timeout=TIMEOUT)
    assert gone.status_code == 404
    assert "removed from the upstream index" in gone.text
    # Out of the URL space: the static server in front cannot serve it either.
    assert not (proxy.cache_dir / "demo-pkg" / WHEEL).exists()
    assert upstream.hits[upstream.file_path(WHEEL, "x" * 64)] == hits
