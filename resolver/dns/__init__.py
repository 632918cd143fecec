"""The DNS wire format and the message types every other package speaks.

Owns: reading queries and walking answers as raw bytes (``wire``), a query's EDNS
(``edns``), turning bytes into a ``Query`` and an ``Answer`` back into bytes
(``codec``), the answers the server writes itself (``responses``), the
``Query``/``Answer``/``Handler`` types (``model``), an answer still to come from
upstream (``pending``), and the rules for host names (``names``).

Imports nothing of ours: everything else builds on it.
"""
