"""The model registry's pieces that need no NATS: kinds, the rollback stack, settings, a base-install CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from classifier.confidence import scorer
from services.core.errors import ModelError
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, DEFAULT_ROUTER_MODEL, EscalationSettings
from services.registry.kinds import KINDS, detect_kind
from services.registry.manage import active_stack

REPO = Path(__file__).resolve().parents[2]


def test_kinds_name_the_files_their_loaders_read(tmp_path):
    assert KINDS["scorer"].onnx_file == scorer.ONNX_FILE
    assert detect_kind(DEFAULT_ROUTER_MODEL).name == "router"
    assert detect_kind(DEFAULT_CONFIDENCE_MODEL).name == "scorer"
    with pytest.raises(ModelError, match="not a model folder"):
        detect_kind(tmp_path)
    assert KINDS["scorer"].load(DEFAULT_CONFIDENCE_MODEL).version.startswith("scorer-")


def test_rollback_walks_back_through_the_versions_made_active():
    def r(action: str, version: str) -> dict[str, str]:
        return {"action": action, "version": version}

    history = [r("published", "a"), r("published", "b"), r("refused", "x"), r("promoted", "c")]
    assert active_stack(history) == ["a", "b", "c"]
    assert active_stack([*history, r("rolled_back", "b")]) == ["a", "b"]
    assert active_stack([*history, r("rolled_back", "b"), r("rolled_back", "a")]) == ["a"]
    assert active_stack([*history, r("promoted", "a")]) == ["a", "b", "c", "a"]
    assert active_stack([r("published", "a"), r("published", "a")]) == ["a"]


def test_a_published_scorer_is_the_learned_one_and_not_also_a_path(tmp_path):
    assert EscalationSettings(published="latest").published == "latest"
    with pytest.raises(ValidationError, match="needs confidence: scorer"):
        EscalationSettings(published="latest", confidence="logprob")
    with pytest.raises(ValidationError, match="not both"):
        EscalationSettings(published="latest", confidence_model=tmp_path)
    with pytest.raises(ValidationError, match="published"):
        EscalationSettings(published="../x")


def test_model_commands_work_without_the_train_extra():
    # A base install has no scikit-learn, pandas or skl2onnx, and `cascade model` imports no training code.
    code = (
        "import sys\n"
        "for m in ('sklearn', 'pandas', 'skl2onnx', 'scipy'): sys.modules[m] = None\n"
        "from services.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "finally:\n"
        "    assert not [m for m in sys.modules if m.startswith('training.')], 'training code imported'\n"
    )
    env = {**os.environ, "CASCADE_NATS__URL": "nats://127.0.0.1:1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
        )

    for args in (["model", "--help"], ["model", "promote", "--help"]):
        proc = run(*args)
        assert proc.returncode == 0, proc.stderr
    assert "--reason" in proc.stdout
    proc = run("model", "list")
    assert proc.returncode == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in proc.stderr
