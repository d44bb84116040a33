"""`cascade ... --help` explains itself, on a full install and on a base install without the train extra."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.cli.main import build_parser
from services.core.settings import DEFAULT_ROUTER_MODEL

REPO = Path(__file__).resolve().parents[2]
# Import names of the distributions the train extra adds (where they differ from the distribution's name).
_IMPORT_NAMES = {"scikit-learn": "sklearn"}

# Prepended to a script run by a fresh interpreter: the packages named in argv[1] (comma-separated)
# cannot be imported, as on an install without the train extra (the Docker image's).
BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

# Every command's --help, as JSON {command: [code, text]}, and what the first train command says.
_BASE_INSTALL = (
    BLOCKER
    + """
import contextlib, io, json
from services.cli.main import build_parser, main
sub = next(a for a in build_parser()._actions if a.dest == "command")
helps = {}
for command in [None, *sub.choices]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main([command, "--help"] if command else ["--help"])
            code = None
        except SystemExit as exit:
            code = exit.code
    helps[command or ""] = [code, out.getvalue()]
out = io.StringIO()
with contextlib.redirect_stderr(out):
    try:
        main(["train", "fit", "--data", "x.parquet", "--out", "m"])
    except SystemExit as exit:
        helps["train fit (run)"] = [exit.code, out.getvalue()]
print(json.dumps({"helps": helps, "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)}))
"""
)


def train_extra_imports() -> list[str]:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    names = [re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0] for req in extra]
    return [_IMPORT_NAMES.get(name, name) for name in names]


def _helps(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    """Every (sub)command's help text, by its command line."""
    out = {prefix: parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out |= _helps(child, f"{prefix} {name}".strip())
    return out


def test_every_command_has_help_on_a_base_install_without_the_train_extra():
    blocked = train_extra_imports()
    assert {"pandas", "sklearn", "scipy", "skl2onnx", "matplotlib"} <= set(blocked)
    run = subprocess.run(
        [sys.executable, "-c", _BASE_INSTALL, ",".join(blocked)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["loaded"] == []  # nothing of the train extra was imported, even partly
    helps = report.pop("helps")
    missing = helps.pop("train fit (run)")
    assert missing[0] == 2 and "pip install 'prompt-cascade[train]'" in missing[1], missing
    assert {"", "up", "ask", "outcomes", "confidence", "train", "classify"} <= set(helps)
    for command, (code, text) in helps.items():
        assert code == 0, (command, text)
        assert text.startswith("usage: cascade"), (command, text)
        assert "Traceback" not in text and "%%" not in text, (command, text)
    assert "needs the train extra" in helps[""][1]


def test_every_help_text_of_a_full_install_renders_without_leftover_format_codes():
    helps = _helps(build_parser())
    assert {"up", "ask", "train fit", "train fit-scorer", "train calibrate", "classify"} <= set(helps)
    for command, text in helps.items():
        assert "%%" not in text and "%(" not in text, (command, text)


def test_fit_help_shows_its_defaults():
    text = _helps(build_parser())["train fit"]
    for option, default in [("--features", "hand"), ("--family", "logreg"), ("--label", "large-wins"), ("--seed", "0")]:
        assert re.search(rf"{option} .*?\(default: {re.escape(default)}\)", text, re.S), (option, text)


def test_fit_defaults_are_the_shipped_router_models_settings():
    card = json.loads((DEFAULT_ROUTER_MODEL / "model_card.json").read_text())
    plain = build_parser().parse_args(["train", "fit", "--data", "x.parquet", "--out", "m"])
    assert (plain.features, plain.family, plain.label, plain.seed) == (
        card["feature_set"],
        card["family"],
        card["label"],
        card["split"]["seed"],
    )
    # And the card's own rebuild command, stripped of the options that only repeat the defaults, means the same.
    argv = shlex.split(card["rebuild_command"])[1:]
    rebuilt = build_parser().parse_args(argv)
    assert (rebuilt.features, rebuilt.family, rebuilt.seed) == (plain.features, plain.family, plain.seed)


@pytest.mark.parametrize("command", ["up", "ask", "outcomes", "confidence"])
def test_a_commands_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([command, "--help"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith(f"usage: cascade {command}")
