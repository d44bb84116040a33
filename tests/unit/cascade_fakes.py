"""Injected parts for the cascade's unit tests: a router and tiers in memory, no sockets."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from classifier.confidence import load_confidence
from services.core.errors import TierUnavailable, Unavailable
from services.core.settings import CascadeSettings
from services.gateway.cascade import Cascade
from services.gateway.domain import Decision, Piece, TextChunk, TierCall, Usage
from services.gateway.record import RequestRecord
from services.gateway.requests import CascadeRequest
from services.tier.backends import Message

TIER = {"backend": "openai", "openai": {"model": "m"}}
PRICES = {"small": (1.0, 2.0), "second": (3.0, 3.0), "large": (10.0, 20.0)}


def settings(**over) -> CascadeSettings:
    tiers = {name: {**TIER, "price": {"input_per_mtok": i, "output_per_mtok": o}} for name, (i, o) in PRICES.items()}
    return CascadeSettings(tiers=tiers, **over)


def request(policy: str = "cascade", text: str = "q", *, tenant: str = "t", speculative: bool = False):
    return CascadeRequest(
        request_id="r1",
        messages=(Message(role="user", content=text),),
        routed_text=text,
        max_tokens=16,
        temperature=None,
        stop=(),
        policy=policy,
        tenant=tenant,
        speculative=speculative,
    )


class Router:
    def __init__(self, tier: str = "small", fail: bool = False) -> None:
        self.tier, self.fail, self.calls = tier, fail, 0

    async def route(self, *, request_id: str, text: str, timeout_s: float) -> Decision:
        self.calls += 1
        if self.fail:
            raise Unavailable("no router is running")
        return Decision(tier=self.tier, score=0.3, threshold=0.5, model_version="v1")


@dataclass
class Answer:
    """What a fake tier says: its words, a token probability, and further samples when asked for n > 1."""

    words: tuple[str, ...]
    prob: float = 0.9
    samples: tuple[str, ...] = ()
    delay_s: float = 0.0


@dataclass
class Tiers:
    answers: dict[str, Answer]
    fail: set[str] = field(default_factory=set)
    calls: list[tuple[str, TierCall]] = field(default_factory=list)

    @property
    def asked(self) -> list[str]:
        return [tier for tier, _ in self.calls]

    async def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]:
        self.calls.append((tier, call))
        answer = self.answers.get(tier)
        if tier in self.fail or answer is None:
            raise TierUnavailable(f"{tier} down")
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        lp = math.log(answer.prob)
        for word in answer.words:
            yield Piece(text=word, logprobs=(lp,))
        n_samples = min(call.n - 1, len(answer.samples)) if call.n > 1 else 0
        usage = Usage(input_tokens=100 * max(call.n, 1), output_tokens=2 * max(call.n, 1))
        yield Piece(final=True, finish_reason="stop", usage=usage, samples=answer.samples[:n_samples])


def words(text: str) -> tuple[str, ...]:
    head, _, tail = text.partition(" ")
    return (head + " ", tail) if tail else (head,)


def make(router, tiers, *, confidence: str = "logprob", calibration=None, clock=None, **over):
    from services.gateway.budget import Budgets

    sink: list[RequestRecord] = []
    s = settings(**over)
    budgets = Budgets(s.gateway.budgets, clock=clock) if clock else None
    cascade = Cascade(
        router=router,
        tiers=tiers,
        record_outcome=sink.append,
        settings=s,
        confidence=load_confidence(confidence),
        calibration=calibration,
        budgets=budgets,
    )
    return cascade, sink


async def run(cascade: Cascade, req: CascadeRequest, timeout_s: float = 5.0):
    chunks: list[TextChunk] = []
    record = None
    async for item in cascade.run(req, timeout_s=timeout_s):
        if isinstance(item, TextChunk):
            chunks.append(item)
        else:
            record = item
    return chunks, record


def shown(chunks: list[TextChunk]) -> str:
    """The text a client ends with: everything after the last retraction."""
    text: list[str] = []
    for c in chunks:
        text = [] if c.retract else text
        text.append(c.text)
    return "".join(text)
