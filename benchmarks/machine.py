"""The machine a timing benchmark runs on: pause background work for the timed block, and read how busy it is.

`paused(pattern)` SIGSTOPs the processes whose command line matches `pattern` (`pgrep -f`) and all
their descendants (a Ray driver's GCS, raylet and `ray::` workers, a sweep's run subprocesses) for
the block, and SIGCONTs exactly those afterwards, in a `finally` (and at exit, and on SIGTERM): the
background sweeps lose the time, not their state. This process and its ancestors are never stopped,
nor is a process someone else stopped (it is not ours to continue).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError), open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
    return parents


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@contextmanager
def paused(pattern: str | None) -> Iterator[list[int]]:
    """SIGSTOP the processes matching `pattern` and their descendants for the block; yields the stopped pids."""
    if not pattern:
        yield []
        return
    parents = _parents()
    mine, pid = set(), os.getpid()
    while pid > 1:  # never this process or one it runs under
        mine.add(pid)
        pid = parents.get(pid, 1)
    roots = {int(p) for p in subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()}
    tree, frontier = set(), roots - mine
    while frontier:
        tree |= frontier
        frontier = {child for child, parent in parents.items() if parent in frontier} - tree - mine
    stopped: list[int] = []

    def resume() -> None:
        while stopped:
            with suppress(ProcessLookupError):
                os.kill(stopped.pop(), signal.SIGCONT)

    atexit.register(resume)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below on SIGTERM too
    try:
        for pid in sorted(tree):
            with suppress(OSError):
                if _state(pid) != "T":  # leave alone what someone else stopped
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
        yield list(stopped)
    finally:
        resume()
        atexit.unregister(resume)
        signal.signal(signal.SIGTERM, previous)


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy on the whole machine over `seconds` (from /proc/stat), while this process sleeps."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle0, total0 = read()
    time.sleep(seconds)
    idle1, total1 = read()
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))
