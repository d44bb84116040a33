"""`cascade ask`: one request through the SDK, printed with its route."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys

from services.core.errors import CascadeError, ConfigError
from services.core.settings import load_settings
from services.sdk import CascadeClient, GenerateResult, collect


def main(args: argparse.Namespace) -> int:
    try:
        prompt = _sample_prompt(args) if args.sample else args.prompt
        if not prompt:
            raise ConfigError("give a prompt, or --sample with a config that has a replay tier")
        if args.sample and not args.json:  # a drawn question is shown, or the answer means nothing
            print(f"{prompt}\n\n---", flush=True)
        with CascadeClient(target=args.target, timeout=args.timeout, token=args.token) as client:
            kwargs = {"policy": args.policy, "max_tokens": args.max_tokens, "temperature": args.temperature}
            if args.stream:
                chunks = []
                for chunk in client.stream(prompt, speculative=args.speculative, **kwargs):
                    if chunk.retract:  # a terminal cannot unprint: say where the replacement starts
                        print(f"\n[withdrawn: escalated to {chunk.tier}]", flush=True)
                    print(chunk.text, end="", flush=True)
                    chunks.append(chunk)
                print()
                result = collect(chunks)
            else:
                result = client.generate(prompt, **kwargs)
    except CascadeError as exc:
        print(f"error: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        sampled = {"prompt": prompt} if args.sample else {}
        print(json.dumps({**sampled, **dataclasses.asdict(result)}, indent=2))
    else:
        if not args.stream:
            print(result.text)
        print(_route_line(result), file=sys.stderr)
    return 0


def _route_line(r: GenerateResult) -> str:
    route = r.route
    confidence = "n/a" if route.confidence is None else f"{route.confidence:.3f}"
    path = " -> ".join(route.tiers_tried) + (" (escalated)" if route.escalated else "")
    return (
        f"\n[{r.request_id}] tier={route.tier} path={path} reason={route.reason or '-'} "
        f"router_score={route.router_score:.3f} "
        f"threshold={route.router_threshold:.3f} model={route.router_model_version or '-'} confidence={confidence}"
        + (f"/{route.confidence_threshold:.3f}" if route.confidence_threshold is not None else "")
        + (f" agreement={route.agreement:.2f}" if route.agreement is not None else "")
        + (f" second={route.second_opinion_tier}" if route.second_opinion_tier else "")
        + " "
        f"tokens={r.usage.input_tokens}+{r.usage.output_tokens}{'~' if r.usage.estimated else ''} "
        f"cost=${r.cost_usd:.6f} total={r.timings.total_ms:.0f}ms route={r.timings.route_ms:.1f}ms"
        + (f" router_error={route.router_error!r}" if route.router_error else "")
    )


def _sample_prompt(args: argparse.Namespace) -> str:
    from services.tier.backends.replay import ReplayBackend

    settings = load_settings(args.config)
    replay = next((t.replay for t in settings.tiers.values() if t.replay is not None), None)
    if replay is None:
        raise ConfigError("--sample needs a config with a replay tier (e.g. configs/cascade.replay.yaml)")
    prompts = ReplayBackend(data_path=replay.data, model=replay.model).prompts()
    return random.Random(args.seed).choice(sorted(prompts))
