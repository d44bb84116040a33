"""The training package's shape (read from the source with ast): no module imports a command module
(``*_cmd.py``, ``*_stream.py``), so commands never call each other (training/dispatch.py picks one);
no training module reads the environment or spells a value the settings object owns (the NATS URL,
the registry bucket, the stream names), and a command loads the settings from its ``--config``."""

from __future__ import annotations

import ast
from pathlib import Path

from services.core.settings import CascadeSettings
from tests.support.source import imported_modules

TRAINING = Path(__file__).resolve().parents[2] / "training"
SOURCES = sorted(TRAINING.glob("*.py"))
COMMANDS = {f"training.{p.stem}" for p in SOURCES if p.stem.endswith(("_cmd", "_stream"))}


def _trees() -> dict[str, ast.AST]:
    return {p.name: ast.parse(p.read_text(), filename=str(p)) for p in SOURCES}


def test_no_module_imports_a_command_module() -> None:
    # Helpers shared by commands live in the non-command modules; training.dispatch names commands by string.
    assert len(COMMANDS) >= 8, sorted(COMMANDS)
    wrong = {}
    for path in SOURCES:
        hits = {c for c in COMMANDS for m in imported_modules(path) if m == c or m.startswith(c + ".")}
        if hits - {f"training.{path.stem}"}:
            wrong[path.name] = sorted(hits)
    assert not wrong, f"training modules import command modules (dispatch: training/dispatch.py): {wrong}"


def test_training_reads_no_environment() -> None:
    reads = {"environ", "getenv", "environb"}
    wrong = {
        name
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr in reads)
        or (isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & reads)
    }
    assert not wrong, f"training/ reads the environment (take it from the --config settings): {sorted(wrong)}"


def test_training_spells_no_value_the_settings_own() -> None:
    s = CascadeSettings()
    owned = {s.nats.client_url, s.router.registry_bucket, s.outcomes.stream, s.outcomes.seen_stream}
    wrong = {
        (name, node.value)
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value in owned or node.value.startswith("nats://"))
    }
    assert not wrong, f"training/ keeps its own copy of a settings value: {sorted(wrong)}"


def test_commands_load_the_settings_from_their_config() -> None:
    calls = [
        (name, ast.unparse(node))
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_settings"
    ]
    assert calls, "no training module loads the settings"
    wrong = [(name, call) for name, call in calls if call != "load_settings(args.config)"]
    assert not wrong, f"load the settings from the command's --config: {wrong}"
