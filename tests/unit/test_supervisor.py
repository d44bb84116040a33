"""The supervisor's restart policy on a real process that keeps dying (no network)."""

from __future__ import annotations

import asyncio
import logging
import os
import re

import pytest

from services.cli.children import ServiceProcess, exit_status
from services.cli.supervisor import ChildFailed, Supervisor, stop_all
from services.core.settings import SupervisorSettings

# `python -m json.tool` on a missing file: prints one error line and exits with code 2, every time.
CRASHER = ["json.tool", "/nonexistent/input.json"]


async def _crasher() -> ServiceProcess:
    child = ServiceProcess("crasher", CRASHER, dict(os.environ))
    await child.start()
    return child


async def test_a_process_that_keeps_dying_is_restarted_with_doubling_backoff_then_given_up(caplog):
    settings = SupervisorSettings(restart="always", backoff_initial_s=0.01, backoff_max_s=0.03, max_restarts=3)
    child = await _crasher()
    with caplog.at_level(logging.WARNING, logger="cascade.up"), pytest.raises(ChildFailed) as failed:
        await asyncio.wait_for(Supervisor(settings, asyncio.Event()).run([child]), 60)  # a hang guard
    delays = [float(d) for d in re.findall(r"restarting crasher in ([\d.]+)s", caplog.text)]
    assert delays == [0.01, 0.02, 0.03]  # doubled, capped at backoff_max_s
    assert caplog.text.count("crasher restarted") == 3
    message = failed.value.message
    assert "crasher died after 3 restarts within 300s (supervisor.max_restarts)" in message
    assert "exited with code 2; its last log line: " in message and "No such file or directory" in message


async def test_with_restart_never_the_first_death_is_final(caplog):
    child = await _crasher()
    with pytest.raises(ChildFailed, match=r"crasher exited with code 2; .*supervisor.restart: never"):
        await asyncio.wait_for(Supervisor(SupervisorSettings(restart="never"), asyncio.Event()).run([child]), 60)
    assert "restarting" not in caplog.text


async def test_a_stop_ends_supervision_and_a_process_that_ignores_sigterm_is_killed_after_the_grace(caplog):
    child = ServiceProcess("stubborn", ["tests.support.stubborn"], dict(os.environ))
    await child.start()
    stop = asyncio.Event()
    watching = asyncio.create_task(Supervisor(SupervisorSettings(), stop).run([child]))
    for _ in range(300):  # until it has set its handler (a hang guard, not a timing assertion)
        if "ignoring SIGTERM" in child.exit_reason():
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(watching, 10)
    assert child.returncode is None  # supervision ended; stopping is stop_all's job
    with caplog.at_level(logging.WARNING, logger="cascade.up"):
        await stop_all([child], asyncio.Event(), grace_s=0.5)
    assert child.returncode == -9 and "stubborn did not stop within 0.5s; killing it" in caplog.text


def test_exit_status_names_the_signal():
    assert exit_status(-9) == "was killed by SIGKILL"
    assert exit_status(3) == "exited with code 3"
