"""aiwall: a forwarding DNS server that keeps generative-AI services off a network."""

from resolver import compiled

__version__ = "0.1.0"

# Before any other module: the hot path's modules run compiled only if built from the
# source next to them (resolver.compiled).
compiled.install()
