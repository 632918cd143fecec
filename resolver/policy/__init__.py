"""What is blocked, for whom, and why.

Owns: the catalog of generative-AI services and its lint (``catalog``), the config's
selectors over it (``selectors``), list files in every format admins have (``lists``
reads one through ``listfile``: the line forms in ``listformats``, dnsmasq, Unbound and
RPZ in ``listzones``, AdGuard's ``$badfilter`` and ``$important`` in ``listrules``),
remote lists and their last good copies (``remote``), suffix matching over millions of
names (``domainset``), the compiled policy and its rules (``blocklist``), client groups
(``groups``), building and retiring the whole policy with its versions (``loading``),
the one verdict function (``verdict``), explanations (``explain``) and exports to other
DNS programs (``export``).

May import ``resolver.dns``, ``resolver.config`` and the top-level helpers
(``metrics``, ``storage``, ``yamltext``); never ``serve``, ``upstream`` or ``handlers``.
"""
