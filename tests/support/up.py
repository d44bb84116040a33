"""Running `cascade up` as a user does: a real process on the replay config, its own ports and data."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml

from services.core.nats import free_port

REPO = Path(__file__).resolve().parents[2]
REPLAY_CONFIG = REPO / "configs" / "cascade.replay.yaml"
CASCADE = [sys.executable, "-m", "services.cli.main"]


def free_ports() -> dict[str, int]:
    return {name: free_port() for name in ("nats", "gateway", "http")}


def replay_config(path: Path, *, data_dir: Path, ports: dict[str, int], **sections: dict[str, Any]) -> Path:
    """configs/cascade.replay.yaml on the given ports and data directory, with ``sections`` added."""
    config = yaml.safe_load(REPLAY_CONFIG.read_text())
    config["nats"]["embedded"] = {"port": ports["nats"], "data_dir": str(data_dir)}
    config["gateway"]["port"] = ports["gateway"]
    config["http"] = {"port": ports["http"]}
    for tier in config["tiers"].values():
        tier["replay"]["data"] = str((REPLAY_CONFIG.parent / tier["replay"]["data"]).resolve())
    config.update(sections)
    path.write_text(yaml.safe_dump(config))
    return path


async def cascade(*args: str, timeout_s: float = 120) -> tuple[int, str]:
    """Run one `cascade` command; its exit status and output (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CASCADE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)  # a hang guard, not a timing assertion
    assert proc.returncode is not None
    return proc.returncode, out.decode()
