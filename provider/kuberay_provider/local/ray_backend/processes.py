"""The processes of a Ray session, found and ended without ``ray stop`` (which would end every Ray of the
machine): read from /proc, by the session's temp dir, its process groups and their descendants."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessTable:
    """Parent and process group of every process, read from /proc."""

    parents: dict[int, int]
    groups: dict[int, int]

    @classmethod
    def read(cls) -> ProcessTable:
        parents: dict[int, int] = {}
        groups: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                pid = int(stat.parent.name)
                parents[pid], groups[pid] = int(fields[1]), int(fields[2])
            except (OSError, IndexError, ValueError):
                continue
        return cls(parents, groups)

    def descendants(self, roots: set[int]) -> set[int]:
        found = set(roots)
        changed = True
        while changed:
            children = {pid for pid, parent in self.parents.items() if parent in found} - found
            found |= children
            changed = bool(children)
        return found


def _processes_naming(marker: bytes) -> set[int]:
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                pids.add(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def processes_of_session(temp_dir: Path) -> list[int]:
    """PIDs of the Ray processes started with ``temp_dir`` (their command lines name it), the rest of
    their process groups and all their descendants (workers, agents). Another Ray on the machine is left
    alone, unlike ``ray stop``.

    The process group matters: ``ray start`` makes itself a group leader and exits, so orphans such as
    the Ray client server (whose command line does not name the temp dir) are found only through it."""
    roots = _processes_naming(str(temp_dir).encode()) - {os.getpid()}
    table = ProcessTable.read()
    ray_groups = {table.groups[pid] for pid in roots if pid in table.groups} - {os.getpgrp()}
    roots |= {pid for pid, group in table.groups.items() if group in ray_groups}
    return sorted(table.descendants(roots) - {os.getpid()})


def terminate(pids: list[int], grace_seconds: float = 2.0, kill_wait_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace_seconds``. The grace is short on purpose: the
    GCS server and raylet of a head being torn down whole ignore SIGTERM for 10 s or more, and nothing
    of the session is kept anyway."""
    for sig, wait_seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, kill_wait_seconds)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
