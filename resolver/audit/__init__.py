"""The audit trail of attempts on banned names, and the reports read from it.

Owns: the attempts gathered between writes (``attempts``), the writer thread with one
backlog per sink (``trail``), and the summaries ``aiwall report`` prints (``report``).

May import ``resolver.dns``, ``resolver.config`` and ``resolver.metrics``.
"""
