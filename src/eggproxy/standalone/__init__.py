"""``eggproxy serve``: the standalone server, an ASGI application on granian.

::

    run.py        the command: checks, prepares the cache, starts granian's workers
    app.py        the application: routing a request to the core (``Proxy``) and back
    request.py    one ASGI request and the plain-text answers
    files.py      sending files: small ones from memory, large ones by granian, streams
    static.py     RFC 9110 validators, conditional GET and byte ranges (pure)
    accesslog.py  the batched Common Log Format access log
"""
