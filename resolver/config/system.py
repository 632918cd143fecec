"""What the machine says, read when the config asks for it: usable CPUs, and the
nameservers of /etc/resolv.conf (the ``system`` upstream)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: its affinity, capped by a container's CPU quota
    (cgroup v2), which os.cpu_count() ignores."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = cgroup.read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        return count
    if quota != "max" and int(period) > 0:
        count = min(count, max(1, -(-int(quota) // int(period))))
    return count


def system_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """Nameservers of resolv.conf, in order, as ``host:53`` (``[v6]:53``)."""
    servers: list[str] = []
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            address = parts[1].split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            servers.append(f"[{ip}]:53" if ip.version == 6 else f"{ip}:53")
    return tuple(servers)
