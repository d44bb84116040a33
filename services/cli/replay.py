"""`cascade replay`: stream a routing-data file's prompts through the live gateway, as load and as labels.

Each prompt goes through the gateway (the config's, or ``--target``) at ``--rate`` requests per second
with at most ``--concurrency`` in flight, tagged with its dataset, task, subtask and prompt id. With
``--feedback``, the recorded score of the model that answered (the tier's configured model, looked up
in the same file) goes back as Feedback, so replayed traffic becomes labelled traffic end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from services.core.errors import CascadeError, ConfigError
from services.core.settings import CascadeSettings, load_settings
from services.sdk import AsyncCascadeClient, GenerateResult, TlsConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayPrompt:
    prompt_id: str
    prompt: str
    tags: dict[str, str]
    # Recorded score per model name.
    scores: dict[str, float]


@dataclass
class ReplaySummary:
    sent: int = 0
    answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by status (NOT_FOUND, UNAVAILABLE, ...)
    tiers: Counter[str] = field(default_factory=Counter)  # which tier answered
    large: int = 0
    cost_usd: float = 0.0
    # Recorded scores of the answers returned (those whose model the file has).
    scored: int = 0
    score_sum: float = 0.0
    feedback_sent: int = 0
    feedback_errors: Counter[str] = field(default_factory=Counter)

    @property
    def large_share(self) -> float:
        return self.large / self.answered if self.answered else 0.0

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None

    def lines(self) -> list[str]:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        tiers = ", ".join(f"{k} {v}" for k, v in sorted(self.tiers.items())) or "none"
        score = "n/a" if self.mean_score is None else f"{self.mean_score:.3f} over {self.scored} answers"
        fb_errors = ", ".join(f"{k} {v}" for k, v in sorted(self.feedback_errors.items()))
        return [
            f"sent {self.sent}, answered {self.answered}, errors: {errors}",
            f"answered by: {tiers}; large share {self.large_share:.1%}",
            f"cost ${self.cost_usd:.6f}; recorded score of the answers {score}",
            f"feedback sent {self.feedback_sent}" + (f", errors: {fb_errors}" if fb_errors else ""),
        ]

    def as_dict(self) -> dict[str, object]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**out, "large_share": self.large_share, "mean_score": self.mean_score}


def load_prompts(path: Path, *, limit: int | None = None, seed: int | None = None) -> list[ReplayPrompt]:
    """The file's prompts (each once, in file order, or shuffled with ``seed``) with every model's score."""
    import pyarrow.parquet as pq

    cols = ["prompt_id", "dataset", "task", "subtask", "prompt", "model", "score"]
    try:
        rows = pq.read_table(path, columns=cols).to_pylist()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as routing data ({', '.join(cols)}): {exc}") from exc
    prompts: dict[str, ReplayPrompt] = {}
    for r in rows:
        p = prompts.get(r["prompt_id"])
        if p is None:
            tags = {k: str(r[k]) for k in ("dataset", "task", "subtask", "prompt_id") if r[k] is not None}
            p = prompts[r["prompt_id"]] = ReplayPrompt(
                prompt_id=r["prompt_id"], prompt=r["prompt"], tags=tags, scores={}
            )
        p.scores[r["model"]] = float(r["score"])
    out = list(prompts.values())
    if seed is not None:
        random.Random(seed).shuffle(out)
    return out[:limit] if limit is not None else out


async def run_replay(
    client: AsyncCascadeClient,
    prompts: list[ReplayPrompt],
    *,
    tier_models: dict[str, str],
    large_tier: str,
    rate: float | None = None,
    concurrency: int = 8,
    feedback: bool = False,
    policy: str | None = None,
    on_done: Callable[[], None] = lambda: None,
) -> ReplaySummary:
    """Send every prompt (paced to ``rate`` per second, ``concurrency`` at once) and sum up what came back."""
    summary = ReplaySummary()
    slots = asyncio.Semaphore(concurrency)
    start = time.monotonic()

    async def one(i: int, p: ReplayPrompt) -> None:
        async with slots:
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            summary.sent += 1
            try:
                result = await client.generate(p.prompt, policy=policy, tags=p.tags)
            except CascadeError as exc:
                summary.errors[exc.code.name] += 1
            else:
                await _answered(client, summary, p, result, tier_models, large_tier, feedback)
            on_done()

    await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    return summary


async def _answered(
    client: AsyncCascadeClient,
    summary: ReplaySummary,
    p: ReplayPrompt,
    result: GenerateResult,
    tier_models: dict[str, str],
    large_tier: str,
    feedback: bool,
) -> None:
    tier = result.route.tier
    summary.answered += 1
    summary.tiers[tier] += 1
    summary.large += tier == large_tier
    summary.cost_usd += result.cost_usd
    score = p.scores.get(tier_models.get(tier, ""))
    if score is None:
        return
    summary.scored += 1
    summary.score_sum += score
    if feedback:
        try:
            await client.feedback(result.request_id, score, comment="cascade replay: recorded score")
            summary.feedback_sent += 1
        except CascadeError as exc:
            summary.feedback_errors[exc.code.name] += 1


def gateway_tls(settings: CascadeSettings) -> TlsConfig | bool:
    """TLS as the config's gateway serves it: its own certificate as the root (right for a self-signed
    one), and its own certificate and key as the client's when it requires client certificates."""
    gw = settings.gateway
    if gw.tls_cert is None:
        return False
    mutual = gw.tls_client_ca is not None
    return TlsConfig(
        root_certificates=gw.tls_cert,
        certificate_chain=gw.tls_cert if mutual else None,
        private_key=gw.tls_key if mutual else None,
    )


def gateway_target(settings: CascadeSettings) -> str:
    """The config's gateway address (a wildcard host: this machine)."""
    gw = settings.gateway
    host = "127.0.0.1" if gw.host in ("0.0.0.0", "::", "") else gw.host
    return f"{host}:{gw.port}"


def main(args: argparse.Namespace) -> int:
    try:
        if (
            args.concurrency < 1
            or (args.limit is not None and args.limit < 1)
            or (args.rate is not None and args.rate <= 0)
        ):
            raise ConfigError("--concurrency and --limit take a whole number >= 1, --rate a positive number")
        settings = load_settings(args.config)
        prompts = load_prompts(args.data, limit=args.limit, seed=args.seed)
        summary = asyncio.run(_main(args, settings, prompts))
    except CascadeError as exc:
        print(f"error: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_dict()) if args.json else "\n".join(summary.lines()))
    return 0 if summary.answered else 1


async def _main(args: argparse.Namespace, settings: CascadeSettings, prompts: list[ReplayPrompt]) -> ReplaySummary:
    from tqdm import tqdm

    tier_models = {name: getattr(t, t.backend).model for name, t in settings.tiers.items()}
    target = args.target or gateway_target(settings)
    # disable=None: no bar when stderr is not a terminal (CI logs, pipes).
    with tqdm(total=len(prompts), desc=f"replay -> {target}", unit="req", disable=None) as bar:
        tls = gateway_tls(settings)
        async with AsyncCascadeClient(target=target, tls=tls, timeout=args.timeout, token=args.token) as client:
            return await run_replay(
                client,
                prompts,
                tier_models=tier_models,
                large_tier=settings.router.large_tier,
                rate=args.rate,
                concurrency=args.concurrency,
                feedback=args.feedback,
                policy=args.policy,
                on_done=lambda: bar.update(1),
            )
