"""Which command module `cascade train evaluate` and `calibrate` run for an argument set (training.dispatch),
parsed by the real `train` parser; every target names a run function that exists."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable
from pathlib import Path

import pytest

from services.registry.kinds import SCORER_ONNX_FILE
from training.cli import add_train_parser
from training.dispatch import calibrate_command, evaluate_command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


@pytest.fixture
def scorer_dir(tmp_path: Path) -> str:
    (tmp_path / SCORER_ONNX_FILE).write_bytes(b"")
    return str(tmp_path)


def test_evaluate_goes_to_the_command_of_its_arguments(tmp_path: Path, scorer_dir: str) -> None:
    router = str(tmp_path / "router")
    policy = ("evaluate", "--policy", "cascade", "--data", "x.parquet")
    cases = {
        policy: ("training.policy_cmd", "run_policy_evaluate"),
        (*policy, "--tiers", "a,b,c"): ("training.ladder_cmd", "run_ladder_evaluate"),
        ("evaluate", "--model", router, "--data", "x.parquet"): ("training.eval_cmd", "run_evaluate"),
        ("evaluate", "--model", router, "--from-nats"): ("training.eval_stream", "run_evaluate_from_nats"),
        ("evaluate", "--model", scorer_dir, "--from-nats"): ("training.scorer_stream", "run_evaluate_scorer_from_nats"),
    }
    assert {argv: evaluate_command(parse(*argv)) for argv in cases} == cases
    _exist(cases.values())


def test_calibrate_goes_to_the_command_of_its_arguments() -> None:
    base = ("calibrate", "--target", "quality=0.9", "--data", "x.parquet")
    cases = {
        base: ("training.policy_cmd", "run_policy_calibrate"),
        (*base, "--tiers", "a,b,c"): ("training.ladder_cmd", "run_ladder_calibrate"),
        (*base, "--router-only"): ("training.eval_cmd", "run_calibrate_router"),
    }
    assert {argv: calibrate_command(parse(*argv)) for argv in cases} == cases
    _exist(cases.values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("evaluate", "--policy", "cascade"), "--policy needs --data FILE"),
        (("evaluate", "--data", "x.parquet"), "needs --model DIR"),
        (("evaluate", "--model", "m", "--from-nats", "--data", "x.parquet"), "--from-nats or --data, not both"),
    ],
)
def test_evaluate_refuses_arguments_no_command_takes(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_command(parse(*argv))


def _exist(commands: Iterable[tuple[str, str]]) -> None:
    for module, name in commands:
        assert callable(getattr(importlib.import_module(module), name)), f"{module}.{name}"
