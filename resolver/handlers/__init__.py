"""The pipeline's stages, one concern per file; ``resolver.pipeline`` decides their order.

Each handler takes a ``Query`` and returns an ``Answer`` at once, or an awaitable only
when it must wait (an upstream). Handlers may import ``resolver.dns``, ``config``,
``clients``, ``policy``, ``upstream`` and the top-level helpers; never ``serve``.
"""
