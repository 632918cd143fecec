"""Benchmark aiwall against dnsmasq and Unbound with dnsperf, all on loopback.

Every server under test loads the same block list (the shipped catalog plus N synthetic
names) and forwards everything else to the same local NSD, which answers any name from a
wildcard root zone. Three query mixes are measured: all blocked, all cached-allowed and
all cache-miss (unique names). Servers take turns within every round (A B C, then B C A,
...), so drift on a shared 2-core machine spreads over all of them; the report gives the
median of the rounds. A separate part measures how aiwall's start time, memory and
blocked throughput scale with the list size.

Outputs (in --output-dir): results.json (every raw run), results.md (the tables, also
printed) and results.png (a chart; needs matplotlib).

Nothing here passes or fails on speed: the targets are reported, never enforced.
See bench/README.md. The command is ``python bench/run.py``; the modules, in the order
a run uses them:

- ``cli``: the command line, and one run from the start to the written report;
- ``settings``: what a run measures (servers, mixes, dnsperf's shape, synthetic names);
- ``system``: child processes, short commands, Debian packages, CPU pinning and
  accounting, git;
- ``servers``: the aiwall snapshot, the block lists, the NSD upstream, and aiwall,
  dnsmasq and Unbound under test;
- ``load``: the query files and the dnsperf runs, measured again when the machine was busy;
- ``dnsperf``: dnsperf's output read into numbers;
- ``rounds``: the comparison over alternating rounds, and aiwall's list scale;
- ``report``: the journal of runs and warnings, the summary, the targets, the Markdown;
- ``charts``: the PNG.

The peers it shares with the tests (a free port, NSD, child processes, memory, the DNS
probe) are in tests/peers/.
"""
