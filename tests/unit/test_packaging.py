"""The Docker image's install, without Docker: the wheel built from the files docker/Dockerfile copies,
installed without the train extra, runs every command docker/compose.yaml gives the image; and the
compose file is valid under the Compose specification's schema."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.test_cli_help import BLOCKER, train_extra_imports

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"

# In the installed copy, under the train-extra blocker: the shipped models load from where the
# settings' defaults point, and each command's --help (or the given check) exits 0.
_IMAGE_CHECKS = """
import json, runpy, sys
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, DEFAULT_ROUTER_MODEL
from classifier import load_model
from classifier.confidence import load_confidence
import services
load_model(DEFAULT_ROUTER_MODEL)
load_confidence("scorer", None)
codes = {}
for command in json.loads(sys.argv[2]):
    sys.argv = [command[0], *command[1:], "--help"]
    try:
        if command[0] == "cascade":
            from services.cli.main import main
            main(command[1:] + ["--help"])
        else:
            runpy.run_module(command[2], run_name="__main__", alter_sys=True)
        codes[" ".join(command)] = None
    except SystemExit as exit:
        codes[" ".join(command)] = exit.code
print(json.dumps({"codes": codes, "package": services.__file__}))
"""


def _build_stage_sources() -> list[str]:
    """What the Dockerfile's build stage copies into its build context (COPY SRC... DEST)."""
    text = DOCKERFILE.read_text()
    build = text.split("FROM ", 2)[1]
    sources = []
    for line in build.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += shlex.split(line)[1:-1]
    return sources


def _image_commands() -> list[list[str]]:
    """The commands compose runs in the prompt-cascade image, and the Dockerfile's own CMD."""
    compose = yaml.safe_load(COMPOSE.read_text())
    commands = [s["command"] for s in compose["services"].values() if s.get("image", "").startswith("prompt-cascade")]
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)
    assert cmd is not None
    return [*commands, json.loads(cmd.group(1))]


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as the image installs it: built from the build stage's files only, no dependencies."""
    root = tmp_path_factory.mktemp("image")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in _build_stage_sources():
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "wheels", src], check=True)
    (wheel,) = (root / "wheels").glob("prompt_cascade-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", root / "site", wheel], check=True)
    return root / "site"


def test_the_image_install_runs_every_command_compose_gives_it_without_the_train_extra(image_site, tmp_path):
    commands = []
    for command in _image_commands():
        assert command[:2] == ["python", "-m"] and command[2].startswith("services."), command
        commands.append(command)
    assert {c[2] for c in commands} >= {"services.router", "services.tier", "services.gateway", "services.http"}
    commands += [["cascade", name] for name in ("up", "ask", "outcomes", "confidence")]
    env = {**os.environ, "PYTHONPATH": str(image_site)}  # the installed copy, not this checkout
    script = BLOCKER + _IMAGE_CHECKS
    run = subprocess.run(
        [sys.executable, "-c", script, ",".join(train_extra_imports()), json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["package"].startswith(str(image_site))
    assert all(code == 0 for code in report["codes"].values()), report["codes"]


def test_compose_file_is_valid_under_the_compose_spec_schema():
    # check-jsonschema ships the Compose specification's schema (vendor.compose-spec): no network needed.
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema is a dev dependency: pip install -e '.[dev]'"
    run = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
