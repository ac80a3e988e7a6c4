from pathlib import Path

from eggproxy.config import Config
from eggproxy.names import NormalizedName
from eggproxy.proxy import Proxy
from eggproxy.update import update

from .fakeindex import FakeAdapter, session_with
from .test_proxy import INDEX, JSON, PAGE, Clock, _page


def test_update_refreshes_due_pages(tmp_path: Path) -> None:
    adapter = FakeAdapter()
    clock = Clock()
    adapter.answers[PAGE] = (200, JSON, _page())
    adapter.answers[INDEX + "other/"] = (200, JSON, _page())
    adapter.answers[INDEX + "gone/"] = (200, JSON, _page())
    adapter.answers[INDEX + "broken/"] = (200, JSON, _page())
    proxy = Proxy(
        Config(cache_dir=tmp_path, index=INDEX, update_interval=1),
        session=session_with(adapter),
        clock=clock,
    )
    for name in ("demo-pkg", "other", "gone", "broken"):
        proxy.page(NormalizedName(name), "json")
    clock.now += 3601
    adapter.answers[PAGE] = (304, {}, b"")
    adapter.answers[INDEX + "gone/"] = (404, {}, b"")
    adapter.answers[INDEX + "broken/"] = (503, {}, b"")
    summary = update(proxy)
    assert (summary.checked, summary.changed, summary.unchanged, summary.failed) == (4, 1, 1, 1)
    assert summary.gone == ["gone"]
    assert "checked 4, changed 1, unchanged 1, failed 1" in summary.line()
    # Refreshed pages are not due again; failed and gone ones still are.
    assert update(proxy).checked == 2
