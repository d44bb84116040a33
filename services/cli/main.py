"""`cascade`: one command with subcommands; each imports what it needs only when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascade",
        description="prompt-cascade: route each prompt to the cheapest LLM tier that answers it well.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the whole system (NATS, router, tiers, gateway); Ctrl-C stops it")
    up.add_argument("--config", type=Path, help="YAML config (default: $CASCADE_CONFIG, else built-in defaults)")
    up.set_defaults(func=_run("services.cli.up"))

    ask = sub.add_parser("ask", help="send one request to a running gateway and print the answer and its route")
    ask.add_argument("prompt", nargs="?", help="the prompt (omit with --sample)")
    ask.add_argument("--target", default="127.0.0.1:50051", help="gateway host:port (default: %(default)s)")
    ask.add_argument(
        "--policy",
        choices=["cascade", "route", "small", "large", "auto"],
        help="cascade (route, escalate unsure small answers), route (never escalate), small, large; "
        "auto = cascade (default: the gateway's gateway.default_policy)",
    )
    ask.add_argument("--max-tokens", type=int, default=0, help="0: the gateway's default")
    ask.add_argument("--temperature", type=float)
    ask.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds (default: %(default)s)")
    ask.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    ask.add_argument(
        "--speculative",
        action="store_true",
        help="with --stream: show a small answer live, and mark where it is withdrawn if it escalates",
    )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.add_argument("--sample", action="store_true", help="ask a random prompt known to the config's replay tier")
    ask.add_argument("--seed", type=int, help="with --sample: which prompt")
    ask.add_argument("--config", type=Path, help="with --sample: the config whose replay tier to draw from")
    ask.set_defaults(func=_run("services.cli.ask"))

    events = sub.add_parser("outcomes", help="print outcome and feedback events from JetStream as JSON lines (for jq)")
    events.add_argument("--config", type=Path, help="config whose NATS and stream to read (default: built-in)")
    events.add_argument("--nats", help="NATS URL (default: the config's, else the embedded server's address)")
    events.add_argument(
        "--durable", help="durable consumer name: each run continues after the last event it acknowledged"
    )
    events.add_argument("--follow", action="store_true", help="keep waiting for new events (Ctrl-C stops)")
    events.set_defaults(func=_run("services.cli.outcomes"))

    from services.cli.confidence import add_parser as add_confidence_parser

    add_confidence_parser(sub).set_defaults(func=_run("services.cli.confidence"))

    from services.cli.model import add_parser as add_model_parser

    add_model_parser(sub).set_defaults(func=_run("services.cli.model"))

    try:
        from training.cli import add_classify_parser, add_train_parser
    except ImportError:  # a base install (no train extra): every other command still works
        return parser

    add_train_parser(sub)
    add_classify_parser(sub)
    return parser


def _run(module: str):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module).main(args))

    return run


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
