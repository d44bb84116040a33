"""CI check: the committed default model's rebuild command still works (on a small sample)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from classifier import load_model

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "classifier" / "models" / "default" / "model_card.json"


def _command(out: Path) -> list[str]:
    argv = shlex.split(json.loads(CARD.read_text())["rebuild_command"])
    assert argv[:3] == ["cascade", "train", "fit"], argv
    argv[argv.index("--out") + 1] = str(out)
    return [sys.executable, "-m", "training.cli", *argv[1:], "--sample", "300", "--quiet"]


def test_rebuild_command_runs_on_a_sample(tmp_path: Path) -> None:
    command = _command(tmp_path / "model")
    data = [Path(REPO, command[i + 1]) for i, arg in enumerate(command) if arg == "--data"]
    if not all(p.exists() for p in data):
        pytest.skip(f"routing data not present: {data}")
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt = load_model(tmp_path / "model")
    committed = load_model(CARD.parent)
    assert rebuilt.card["feature_set"] == committed.card["feature_set"]
    assert rebuilt.card["family"] == committed.card["family"]
    assert rebuilt.pair == committed.pair
