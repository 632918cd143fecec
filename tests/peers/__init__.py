"""The real peers that tests, tools (tests/tools: fuzz, soak) and the benchmark (bench/)
start and talk to on loopback, each written once:

- ``ports``: a port free for both UDP and TCP, for programs that cannot take port 0;
- ``process``: a child process with its output in a log file, stopped by its PID, and
  its memory read from /proc;
- ``probe``: one DNS question asked until answered (dnspython, an independent client);
- ``nsd``: NSD as a real upstream, answering every name from a wildcard root zone;
- ``listserver``: an HTTP server publishing block lists (ETag/304, errors, slow bodies);
- ``aiwall``: ``aiwall serve`` as a real process from a YAML config, as administrators
  run it;
- ``wait``: waiting for something a peer does in its own time, with a deadline.

Nothing here imports the code under test (``resolver``): a peer sees aiwall only
through its sockets, files, signals and log, as a real client or upstream does.
"""
