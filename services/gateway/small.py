"""The escalating path of policy cascade: an answer, judged, kept or replaced one tier up, until one is kept.

From the starting tier (router.tiers[i], cheapest first), each answer that is not confident enough
escalates one step up, at most ``max_escalations`` times; the top tier's answer (or the one reached
when no escalation is left) is returned as it is. The cheapest tier's answer may be sampled k times
and have a second opinion (another cheap tier answering the same prompt, in parallel or only when the
first confidence is unsure); the second opinion joins the evidence but is never returned. An answer
higher up is judged with every earlier answer of the request (lower tiers', the second opinion) as
the other answers. HELD streams hold an answer until it is judged; SPECULATIVE streams show it live
and retract it if it escalates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from services.core.errors import Cancelled, CascadeError
from services.gateway import escalation
from services.gateway.breaker import TierDown
from services.gateway.domain import Purpose, Reason, TextChunk
from services.gateway.record import Attempt, RequestRecord
from services.gateway.requests import CascadeRequest

if TYPE_CHECKING:
    from services.gateway.cascade import Cascade

log = logging.getLogger(__name__)


class SmallFirst:
    def __init__(
        self, cascade: Cascade, request: CascadeRequest, record: RequestRecord, deadline: float, *, start: str
    ) -> None:
        settings = cascade.settings
        self._c, self._request, self._record, self._deadline = cascade, request, record, deadline
        self._esc, self._ladder = settings.escalation, settings.router.tiers
        self._step, self._escalations_left = self._ladder.index(start), settings.max_escalations
        self._rules = escalation.thresholds(settings, cascade.calibration)
        self._second_tier = self._esc.second_opinion.tier
        self._mode = self._rules.second_opinion if self._second_tier and self._step == 0 else "never"
        self._shown = False  # speculative: the caller has seen text not yet retracted
        self._kept = False  # the last judged answer is the one returned

    @property
    def _tier(self) -> str:
        return self._ladder[self._step]

    @property
    def _judged(self) -> bool:
        """Whether the current tier's answer may still escalate (else it is returned as it is)."""
        return self._step < len(self._ladder) - 1 and self._escalations_left > 0

    async def run(self) -> AsyncIterator[TextChunk]:
        parallel = self._start_second_opinion() if self._mode == "parallel" else None
        try:
            purpose = Purpose.ANSWER
            while self._judged:
                async for chunk in self._try(self._record.begin(self._tier, purpose), parallel):
                    yield chunk
                if self._kept:
                    return
                parallel, purpose = None, Purpose.ESCALATION
                if self._shown:
                    yield TextChunk(text="", tier=self._ladder[self._step + 1], retract=True)
                    self._shown = False
                self._step, self._escalations_left = self._step + 1, self._escalations_left - 1
            async for chunk in self._last(purpose):
                yield chunk
        finally:
            if parallel is not None:
                self._stop_second_opinion(*parallel)

    async def _try(
        self, attempt: Attempt, parallel: tuple[asyncio.Task[str | None], Attempt] | None
    ) -> AsyncIterator[TextChunk]:
        """One judged answer: its chunks, live or (held) once it is kept; sets _kept when it is."""
        held: list[TextChunk] = []
        try:
            async for chunk in self._answer(attempt):
                if self._request.speculative:
                    yield self._show(chunk)
                else:
                    held.append(chunk)
        except CascadeError as exc:
            if parallel is not None:  # no answer to judge: the second opinion is not needed
                self._stop_second_opinion(*parallel)
            self._after_error(exc)
            return
        judgement = await self._judge(attempt, parallel)
        if judgement.escalate and not self._next_is_barred():  # else: reason BUDGET or TIER_DOWN
            self._record.route.reason = judgement.reason
            return
        if not judgement.escalate:
            self._record.route.reason = judgement.reason
        for chunk in self._keep(attempt, held):
            yield chunk
        self._record.answered_by(attempt)
        self._kept = True

    def _next_is_barred(self) -> bool:
        """The next tier up is off limits: the tenant's budget keeps the request off the top, or its breaker is open."""
        if self._step + 1 == len(self._ladder) - 1 and self._c.budget_says_small(self._request, self._record):
            return True
        return self._c.tier_down_keeps_below(self._request, self._record, self._ladder[self._step + 1])

    def _answer(self, attempt: Attempt) -> AsyncIterator[TextChunk]:
        n = self._esc.samples if self._step == 0 else 1  # self-consistency is the cheapest tier's
        call = self._c.tier_call(self._request, self._deadline, n=n)
        return self._c.stream_attempt(self._request, attempt, call)

    def _show(self, chunk: TextChunk) -> TextChunk:
        self._record.mark_first_token()
        self._shown = True
        return chunk

    def _after_error(self, exc: CascadeError) -> None:
        """A failed judged answer escalates (escalation.on_error) unless the next tier is barred."""
        if not self._esc.on_error or self._next_is_barred():
            raise exc
        # A breaker's refusal is logged once, by the breaker, not once per request.
        level = logging.INFO if isinstance(exc, TierDown) else logging.WARNING
        log.log(level, "request %s: tier %s failed (%s), escalating", self._request.request_id, self._tier, exc.message)
        self._record.route.reason = Reason.SMALL_ERROR

    async def _last(self, purpose: Purpose) -> AsyncIterator[TextChunk]:
        """The answer that is returned whatever it is: streamed as it is generated."""
        attempt = self._record.begin(self._tier, purpose)
        async for chunk in self._c.stream_attempt(
            self._request, attempt, self._c.tier_call(self._request, self._deadline)
        ):
            yield self._show(chunk)
        self._c.score_alone(self._request, self._record, attempt)
        self._record.answered_by(attempt)

    def _keep(self, attempt: Attempt, held: list[TextChunk]) -> list[TextChunk]:
        """The kept answer's chunks still to send (the vote may have chosen another sample)."""
        if attempt.chosen is None:
            return [self._show(c) for c in held]
        retract = [TextChunk(text="", tier=attempt.tier, retract=True)] if self._shown else []
        return [self._show(c) for c in [*retract, TextChunk(text=attempt.chosen, tier=attempt.tier)]]

    async def _judge(
        self, attempt: Attempt, parallel: tuple[asyncio.Task[str | None], Attempt] | None
    ) -> escalation.Judgement:
        others = escalation.vote(attempt)
        if attempt.purpose == Purpose.ESCALATION:
            others += self._earlier_answers(attempt)
        route = self._record.route
        if self._step == 0:
            route.samples = 1 + len(attempt.samples) if self._esc.samples > 1 else 0
        threshold = self._rules.steps[self._step]
        route.confidence_threshold = threshold
        second = await parallel[0] if parallel is not None else None
        unsure_asks = parallel is None and self._step == 0 and self._mode == "when_unsure"
        if unsure_asks and self._rules.unsure(self._score(attempt, others)):
            second = await self._second_opinion(self._begin_second_opinion())
        if second is not None:
            others = [*others, second]
        judgement = escalation.judge(
            self._score(attempt, others), answer=attempt.text, others=others, threshold=threshold
        )
        route.agreement = judgement.agreement
        return judgement

    def _earlier_answers(self, attempt: Attempt) -> list[str]:
        """Answers given before this one in the request (lower tiers', second opinions): free evidence."""
        return [a.text for a in self._record.attempts if a is not attempt and a.final is not None and a.error is None]

    def _score(self, attempt: Attempt, others: list[str]) -> float:
        route = self._record.route
        model = self._c.confidence  # once: a hot swap between scoring and recording must not mislabel
        route.confidence_model_version = model.version
        return escalation.score(
            model,
            prompt=self._request.routed_text,
            attempt=attempt,
            others=others,
            router_score=route.router_score if route.router_model_version else None,
        )

    def _begin_second_opinion(self) -> Attempt:
        assert self._second_tier is not None
        self._record.route.second_opinion_tier = self._second_tier
        return self._record.begin(self._second_tier, Purpose.SECOND_OPINION)

    def _start_second_opinion(self) -> tuple[asyncio.Task[str | None], Attempt]:
        attempt = self._begin_second_opinion()
        return asyncio.create_task(self._second_opinion(attempt)), attempt

    async def _second_opinion(self, attempt: Attempt) -> str | None:
        """The other tier's whole answer; None when it failed (the request goes on without it)."""
        try:
            async for _ in self._c.stream_attempt(
                self._request, attempt, self._c.tier_call(self._request, self._deadline)
            ):
                pass
        except CascadeError as exc:
            log.warning("request %s: second opinion failed, ignored: %s", self._request.request_id, exc.message)
            return None
        except asyncio.CancelledError:
            if attempt.error is None:
                attempt.fail(Cancelled("the second opinion was no longer needed"))
            raise
        return attempt.streamed

    def _stop_second_opinion(self, task: asyncio.Task[str | None], attempt: Attempt) -> None:
        if not task.done():
            task.cancel()
        if attempt.final is None and attempt.error is None:
            attempt.fail(Cancelled("the second opinion was no longer needed"))
