"""`cascade up`'s processes, found from outside by their command lines (for benches that measure or kill them)."""

from __future__ import annotations

from pathlib import Path


def up_children(pid: int) -> dict[str, int]:
    """`cascade up`'s live child processes by name: nats-server, router, gateway, http, tier-<name>."""
    found = {}
    # Every thread's children: a process started from a worker thread is listed under that thread.
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for child in children:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile
                continue
            if argv[0].endswith(b"nats-server"):
                found["nats-server"] = int(child)
            elif b"-m" in argv:  # a zombie's command line is empty: not listed
                module = argv[argv.index(b"-m") + 1].decode().removeprefix("services.")
                name = f"tier-{argv[argv.index(b'--tier') + 1].decode()}" if b"--tier" in argv else module
                found[name] = int(child)
    return found
