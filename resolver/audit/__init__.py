"""The audit trail of attempts on banned names, and the reports read from it.

Owns: the attempts gathered between writes (``attempts``), the sinks with one backlog
each (``trail``), the writer process that owns them and the server's side of the pipe
to it (``writer``), and the summaries ``aiwall report`` prints (``report``).

May import ``resolver.dns``, ``resolver.config``, ``resolver.metrics`` and
``resolver.logs``.
"""
