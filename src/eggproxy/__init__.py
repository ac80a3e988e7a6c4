"""eggproxy: an on-demand caching proxy for Python package indexes."""

__version__ = "0.1.0.dev0"
