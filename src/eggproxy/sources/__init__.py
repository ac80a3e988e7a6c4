"""Where pages and files come from: remote indexes, local folders, and their aggregate.

::

    base.py       the Source protocol and what a source answers (Fetched, FileResponse)
    remote.py     a remote simple index over HTTP (PEP 691 JSON first, PEP 503 HTML)
    local.py      a flat folder of private distributions
    aggregate.py  several sources behind one index, first source wins (no dependency confusion)
"""
