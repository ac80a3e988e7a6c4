"""The page at ``/``: where the index is and how to point pip, uv and buildout at it.

A person who opens the server's address in a browser, or a client given the
server's root instead of the index URL, learns the right URL instead of
meeting a bare 404.  Pure: the URL in, the HTML out (every part escaped, as
the host comes from the request).
"""

from __future__ import annotations

from html import escape


def landing_page(index_url: str) -> bytes:
    """A small HTML page naming ``index_url`` and the client settings that use it."""
    url = escape(index_url)
    host = escape(index_url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])
    plain = index_url.startswith("http://")
    trusted = f" --trusted-host {host}" if plain else ""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        '<meta charset="utf-8">',
        "<title>eggproxy</title>",
        "</head>",
        "<body>",
        "<h1>eggproxy</h1>",
        f'<p>A caching Python package index. The index is at <a href="{url}">{url}</a>'
        " (PEP 503 HTML and PEP 691 JSON).</p>",
        "<h2>pip</h2>",
        f"<pre>pip install --index-url {url}{trusted} PACKAGE</pre>",
        "<p>or in <code>pip.conf</code>:</p>",
        f"<pre>[global]\nindex-url = {url}</pre>",
        "<h2>uv</h2>",
        f"<pre>uv pip install --index-url {url} PACKAGE\nexport UV_INDEX_URL={url}</pre>",
        "<h2>zc.buildout</h2>",
        f"<pre>[buildout]\nindex = {url}</pre>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(lines).encode()
