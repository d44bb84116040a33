"""Looking at processes a test started: log lines, children (zombies included), leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path


async def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Wait until ``text`` is in the log file ``path``; fail at once if ``process`` exits first."""
    for _ in range(int(timeout_s / 0.2)):
        if text in path.read_text():
            return
        assert process.poll() is None, path.read_text()[-3000:]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {text!r} in {path} within {timeout_s}s")


def children_named(name: str) -> list[str]:
    """This process's children called ``name``, zombies included, as 'pid state'."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:  # gone meanwhile
            continue
        comm, fields = rest.rsplit(") ", 1)
        state, ppid = fields.split()[:2]
        if comm == name and int(ppid) == os.getpid():
            found.append(f"{pid} {state}")
    return found


def processes_using(path: Path) -> list[str]:
    """Pids of live processes whose command line names ``path``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(path) in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
    return found


def children_of(pid: int) -> list[int]:
    """Pids of the live children of ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child, rest = stat.read_text().split(" (", 1)
        except OSError:  # gone meanwhile
            continue
        state, ppid = rest.rsplit(") ", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(child))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def child_with(pid: int, text: str) -> int:
    """The live child of ``pid`` whose command line contains ``text``."""
    for child in children_of(pid):
        with contextlib.suppress(OSError):
            if text in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return child
    raise AssertionError(f"no child of {pid} runs {text!r}")
