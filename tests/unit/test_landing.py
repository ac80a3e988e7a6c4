from eggproxy.landing import landing_page


def test_names_the_index_and_each_client() -> None:
    page = landing_page("http://proxy.example.test:3141/simple/").decode()
    assert 'href="http://proxy.example.test:3141/simple/"' in page
    assert "pip install --index-url http://proxy.example.test:3141/simple/" in page
    assert "--trusted-host proxy.example.test" in page
    assert "uv pip install --index-url" in page and "UV_INDEX_URL=" in page
    assert "[buildout]\nindex = http://proxy.example.test:3141/simple/" in page


def test_https_needs_no_trusted_host() -> None:
    assert b"trusted-host" not in landing_page("https://proxy.example.test/simple/")


def test_a_hostile_host_is_escaped() -> None:
    page = landing_page('http://"><script>x</script>/simple/')
    assert b"<script>" not in page
