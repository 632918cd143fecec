"""What each phase of a run after the comparison works with: the run's settings and
folder, the servers it starts, the load it puts on them, and the processes to stop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.load import Load
from bench.servers import Servers
from bench.settings import Settings
from bench.system import Processes


@dataclass
class Phase:
    settings: Settings
    workdir: Path
    servers: Servers
    load: Load
    procs: Processes
