"""Sites that lose their link: ``eggproxy prefetch``, ``export`` and ``import``.

These are front ends of the core like the servers: they call :class:`~eggproxy.proxy.Proxy`
only.  ``requirements`` reads pip requirements files, ``target`` describes the machine that
will install, ``resolve`` is the resolvelib provider, ``prefetch`` fills the cache from a
resolution, ``export`` writes a static index, ``merge`` imports one into a cache.
"""
