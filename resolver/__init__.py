"""aiwall: a forwarding DNS server that keeps generative-AI services off a network."""

__version__ = "0.1.0"
