"""`cascade`: one command with subcommands; each imports what it needs only when it runs."""

from __future__ import annotations

import argparse
import os
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
    _add_token(ask)
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.add_argument(
        "--sample",
        action="store_true",
        help="ask a random prompt known to the config's replay tier; it is printed before the answer "
        "(with --json: the 'prompt' field)",
    )
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
    export = events.add_subparsers(dest="outcomes_command", metavar="SUBCOMMAND").add_parser(
        "export",
        help="write recorded outcomes with their labels as a routing-data Parquet file (train fit --data reads it)",
        description="One row per (request, model that answered with a label), in the columns of "
        "shared/data/routing; prompt_id is the prompt's SHA-256. Rows of outcomes recorded without "
        "outcomes.store_prompt_text have no prompt: they are skipped and counted on stderr.",
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE.parquet")
    export.add_argument("--since", metavar="TIME", help="ISO 8601 time (naive: UTC) or an age: 30m, 12h, 7d")
    export.add_argument("--config", type=Path, help="config whose NATS, stream, tiers and feedback window to use")
    export.add_argument("--nats", help="NATS URL (default: the config's, else the embedded server's address)")
    export.set_defaults(func=_run("services.cli.export"))

    replay = sub.add_parser(
        "replay",
        help="stream a routing-data file's prompts through the live gateway (load, and labels with --feedback)",
        description="Sends each prompt of FILE (routing-data Parquet, e.g. shared/data/routing/mmlu_pro.parquet) "
        "to the gateway, tagged with its dataset, task, subtask and prompt_id, and prints a summary: sent, "
        "answered, errors by status, which tiers answered, the large share, the cost and the recorded score "
        "of the answers. With --feedback, each answer's recorded score (the score in FILE of the answering "
        "tier's configured model) is sent back as Feedback.",
    )
    replay.add_argument("--data", type=Path, required=True, metavar="FILE", help="routing-data Parquet file")
    replay.add_argument("--limit", type=int, metavar="N", help="only the first N prompts")
    replay.add_argument("--seed", type=int, help="shuffle the prompts with this seed (default: file order)")
    replay.add_argument("--rate", type=float, metavar="R", help="requests started per second (default: no pacing)")
    replay.add_argument("--concurrency", type=int, default=8, metavar="C", help="in flight at most (default: 8)")
    replay.add_argument("--feedback", action="store_true", help="send each answer's recorded score as Feedback")
    replay.add_argument("--policy", choices=["cascade", "route", "small", "large"], help="default: the gateway's")
    replay.add_argument("--timeout", type=float, default=120.0, help="deadline per request in seconds")
    replay.add_argument("--target", help="gateway host:port (default: the config's gateway.host:port)")
    replay.add_argument("--config", type=Path, help="config of the running system (gateway address, tier models)")
    replay.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    _add_token(replay)
    replay.set_defaults(func=_run("services.cli.replay"))

    token = sub.add_parser("token", help="bearer tokens for gateway.tenants").add_subparsers(
        dest="token_command", required=True, metavar="SUBCOMMAND"
    )
    token.add_parser(
        "hash",
        help="print the SHA-256 (hex) of the token read from stdin, for tokens_sha256 / api_keys_sha256",
        description="Reads one token from stdin (surrounding whitespace stripped) and prints its SHA-256 in "
        'hex: printf %s "$TOKEN" | cascade token hash',
    ).set_defaults(func=_run("services.cli.token"))

    from services.cli.confidence import add_parser as add_confidence_parser

    add_confidence_parser(sub).set_defaults(func=_run("services.cli.confidence"))

    from services.cli.model import add_parser as add_model_parser

    add_model_parser(sub).set_defaults(func=_run("services.cli.model"))

    try:
        from training.cli import add_classify_parser, add_train_parser
    except ImportError as exc:  # a base install (no train extra): every other command still works
        for name in ("train", "classify"):
            _add_missing_extra(sub, name, exc)
        return parser

    add_train_parser(sub)
    add_classify_parser(sub)
    return parser


def _add_token(parser: argparse.ArgumentParser) -> None:
    # The environment, not the command line, is where a token should come from: argv shows in `ps`.
    parser.add_argument(
        "--token",
        default=os.environ.get("CASCADE_TOKEN") or None,
        metavar="TOKEN",
        help="bearer token for a gateway with gateway.tenants (default: $CASCADE_TOKEN)",
    )


def _add_missing_extra(sub: argparse._SubParsersAction, name: str, exc: ImportError) -> None:  # type: ignore[type-arg]
    """A command whose code is not installed: it says what to install instead of 'invalid choice'."""
    message = f"`cascade {name}` needs the train extra ({exc}): pip install 'prompt-cascade[train]'"
    p = sub.add_parser(name, help="(not installed: needs the train extra)", description=message)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(_args: argparse.Namespace) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    p.set_defaults(func=run)


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
