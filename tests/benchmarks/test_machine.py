"""`benchmarks.machine.paused`: what a timing benchmark stops, and that it always continues it."""

from __future__ import annotations

import subprocess
import time
import uuid

from benchmarks.machine import _parents, _state, paused


def _tree(marker: str) -> tuple[subprocess.Popen, int]:
    """A process matching `marker` with one child that does not (as a Ray driver and its workers)."""
    parent = subprocess.Popen(["bash", "-c", f"sleep 60 & wait; : {marker}"])
    for _ in range(100):
        children = [pid for pid, ppid in _parents().items() if ppid == parent.pid]
        if children:
            return parent, children[0]
        time.sleep(0.05)
    raise RuntimeError("the child did not start")


def _settled(pid: int) -> str:
    """The process state once a just-sent SIGSTOP / SIGCONT has taken effect (signals are asynchronous)."""
    state = _state(pid)
    for _ in range(50):
        time.sleep(0.02)
        state, previous = _state(pid), state
        if state == previous:
            return state
    return state


def test_paused_stops_the_matching_processes_and_their_descendants_then_continues_exactly_those():
    marker = f"pause-test-{uuid.uuid4().hex}"
    parent, child = _tree(marker)
    other, other_child = _tree(f"other-{uuid.uuid4().hex}")
    try:
        with paused(marker) as stopped:
            assert sorted(stopped) == sorted([parent.pid, child])
            assert _settled(parent.pid) == _settled(child) == "T"
            assert _settled(other.pid) != "T" and _settled(other_child) != "T"  # not matched: left running
        assert _settled(parent.pid) != "T" and _settled(child) != "T"
    finally:
        for process in (parent, other):
            subprocess.run(["pkill", "-P", str(process.pid)])
            process.kill()
            process.wait()


def test_a_process_someone_else_stopped_stays_stopped():
    marker = f"pause-test-{uuid.uuid4().hex}"
    parent, child = _tree(marker)
    try:
        subprocess.run(["kill", "-STOP", str(child)], check=True)
        assert _settled(child) == "T"
        with paused(marker) as stopped:
            assert stopped == [parent.pid]
        assert _settled(parent.pid) != "T" and _settled(child) == "T"  # not ours to continue
    finally:
        subprocess.run(["kill", "-CONT", str(child)])
        subprocess.run(["pkill", "-P", str(parent.pid)])
        parent.kill()
        parent.wait()
