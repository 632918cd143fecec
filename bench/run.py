#!/usr/bin/env python3
"""The benchmark's command: ``python bench/run.py [options]`` (``make bench``, and
``make bench-smoke`` with ``--smoke``). The code is the ``bench`` package around this
file; see bench/__init__.py and bench/README.md."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts bench/ first on sys.path: import the package (and the
    # peers it shares with the tests, tests/peers/) from the checkout's root instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from bench.cli import main

    sys.exit(main())
