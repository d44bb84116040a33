"""Which command module runs a `cascade train ...` argument set, imported only when it runs, so `--help`
stays fast and no command module imports another (tests/unit/test_training_shape.py)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path

Command = tuple[str, str]  # (module, run function)


def lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The one run function of a command with a single code path."""
    return dispatch(lambda _args: (module, name))


def dispatch(choose: Callable[[argparse.Namespace], Command]) -> Callable[[argparse.Namespace], int]:
    """Run the command ``choose`` picks for the arguments (command modules never call each other)."""

    def run(args: argparse.Namespace) -> int:
        module, name = choose(args)
        return int(getattr(importlib.import_module(module), name)(args))

    return run


def evaluate_command(args: argparse.Namespace) -> Command:
    """`train evaluate`: policies replayed (two tiers, or N with --tiers), or a model on files, or a
    router or scorer against the one in service on the stream."""
    if args.policy:
        if not args.data:
            raise ValueError("train evaluate --policy needs --data FILE (recorded answers to replay)")
        if args.tiers:
            return "training.ladder_cmd", "run_ladder_evaluate"
        return "training.policy_cmd", "run_policy_evaluate"
    if not args.model:
        raise ValueError("train evaluate needs --model DIR (router metrics) or --policy NAME (policy replay)")
    if args.from_nats is None:
        return "training.eval_cmd", "run_evaluate"
    if args.data:
        raise ValueError("evaluate reads --from-nats or --data, not both (publish's gate takes both)")
    from services.registry.kinds import SCORER_ONNX_FILE

    if (Path(args.model) / SCORER_ONNX_FILE).is_file():
        return "training.scorer_stream", "run_evaluate_scorer_from_nats"
    return "training.eval_stream", "run_evaluate_from_nats"


def calibrate_command(args: argparse.Namespace) -> Command:
    """`train calibrate`: the router's own threshold, or the joint policy (two tiers, or N with --tiers)."""
    if args.router_only:
        return "training.eval_cmd", "run_calibrate_router"
    if args.tiers:
        return "training.ladder_cmd", "run_ladder_calibrate"
    return "training.policy_cmd", "run_policy_calibrate"


def from_nats(files: Command, stream: Command) -> Callable[[argparse.Namespace], int]:
    """A fit on outcome files, or with --from-nats on the outcome stream."""
    return dispatch(lambda args: files if args.from_nats is None else stream)
