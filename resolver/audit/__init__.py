"""The audit trail of attempts on banned names, and the reports read from it.

Owns: the attempts gathered between writes (``attempts``), the rows and the SQLite and
JSON-lines sinks (``sinks``), the trail that runs every sink with one backlog each
(``trail``), client pseudonyms (``pseudonyms``), the PostgreSQL trail that every
replica writes (``postgres``) and its tables' migrations (``schema``), the writer process
that owns the sinks and the server's side of the pipe to it (``writer``), and the
summaries ``aiwall report`` prints (``report``).

May import ``resolver.dns``, ``resolver.config``, ``resolver.metrics``, ``resolver.logs``
and ``resolver.background`` (the writer's priority).
"""
