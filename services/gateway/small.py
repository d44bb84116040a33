"""The escalating path of policy cascade: a small answer (sampled k times), judged, kept or replaced.

A second opinion (another cheap tier) answers the same prompt in parallel, or only when the first
confidence is unsure; it joins the evidence but is never returned. HELD streams hold the small
answer until it is judged; SPECULATIVE streams show it live and retract it if it escalates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from services.core.errors import Cancelled, CascadeError
from services.gateway import escalation
from services.gateway.domain import Purpose, Reason, TextChunk
from services.gateway.record import Attempt, RequestRecord
from services.gateway.requests import CascadeRequest

if TYPE_CHECKING:
    from services.gateway.cascade import Cascade

log = logging.getLogger(__name__)


class SmallFirst:
    def __init__(self, cascade: Cascade, request: CascadeRequest, record: RequestRecord, deadline: float) -> None:
        settings = cascade.settings
        self._c, self._request, self._record, self._deadline = cascade, request, record, deadline
        self._esc, self._small, self._large = (
            settings.escalation,
            settings.router.small_tier,
            settings.router.large_tier,
        )
        self._rules = escalation.thresholds(self._esc, cascade.calibration)
        self._second_tier = self._esc.second_opinion.tier
        self._mode = self._rules.second_opinion if self._second_tier else "never"
        self._shown = False  # speculative: the caller has seen small text

    async def run(self) -> AsyncIterator[TextChunk]:
        parallel = self._start_second_opinion() if self._mode == "parallel" else None
        try:
            attempt = self._record.begin(self._small)
            held: list[TextChunk] = []
            try:
                async for chunk in self._small_answer(attempt):
                    if self._request.speculative:
                        yield self._show(chunk)
                    else:
                        held.append(chunk)
            except CascadeError as exc:
                if parallel is not None:  # no answer to judge: the second opinion is not needed
                    self._stop_second_opinion(*parallel)
                async for chunk in self._after_small_error(exc):
                    yield chunk
                return
            judgement = await self._judge(attempt, parallel)
            if not judgement.escalate:
                self._record.route.reason = judgement.reason
            elif not self._c.budget_says_small(self._request, self._record):  # else: reason BUDGET
                self._record.route.reason = judgement.reason
                async for chunk in self._escalate():
                    yield chunk
                return
            for chunk in self._keep(attempt, held):
                yield chunk
            self._record.answered_by(attempt)
        finally:
            if parallel is not None:
                self._stop_second_opinion(*parallel)

    def _small_answer(self, attempt: Attempt) -> AsyncIterator[TextChunk]:
        call = self._c.tier_call(self._request, self._deadline, n=self._esc.samples)
        return self._c.stream_attempt(self._request, attempt, call)

    def _show(self, chunk: TextChunk) -> TextChunk:
        self._record.mark_first_token()
        self._shown = self._shown or chunk.tier == self._small
        return chunk

    async def _after_small_error(self, exc: CascadeError) -> AsyncIterator[TextChunk]:
        if not self._esc.on_error or self._c.budget_says_small(self._request, self._record):
            raise exc
        log.warning("request %s: small tier failed (%s), escalating", self._request.request_id, exc.message)
        self._record.route.reason = Reason.SMALL_ERROR
        async for chunk in self._escalate():
            yield chunk

    async def _escalate(self) -> AsyncIterator[TextChunk]:
        if self._shown:
            yield TextChunk(text="", tier=self._large, retract=True)
        attempt = self._record.begin(self._large, Purpose.ESCALATION)
        async for chunk in self._c.stream_attempt(
            self._request, attempt, self._c.tier_call(self._request, self._deadline)
        ):
            yield self._show(chunk)
        self._c.score_alone(self._request, self._record, attempt)
        self._record.answered_by(attempt)

    def _keep(self, attempt: Attempt, held: list[TextChunk]) -> list[TextChunk]:
        """The kept small answer's chunks still to send (the vote may have chosen another sample)."""
        if attempt.chosen is None:
            return [self._show(c) for c in held]
        retract = [TextChunk(text="", tier=self._small, retract=True)] if self._shown else []
        return [self._show(c) for c in [*retract, TextChunk(text=attempt.chosen, tier=self._small)]]

    async def _judge(
        self, attempt: Attempt, parallel: tuple[asyncio.Task[str | None], Attempt] | None
    ) -> escalation.Judgement:
        others = escalation.vote(attempt)
        route = self._record.route
        route.samples = 1 + len(attempt.samples) if self._esc.samples > 1 else 0
        route.confidence_threshold = self._rules.escalation
        route.confidence_model_version = self._c.confidence.version
        second = await parallel[0] if parallel is not None else None
        if parallel is None and self._mode == "when_unsure" and self._rules.unsure(self._score(attempt, others)):
            second = await self._second_opinion(self._begin_second_opinion())
        if second is not None:
            others = [*others, second]
        judgement = escalation.judge(
            self._score(attempt, others), answer=attempt.text, others=others, threshold=self._rules.escalation
        )
        route.agreement = judgement.agreement
        return judgement

    def _score(self, attempt: Attempt, others: list[str]) -> float:
        route = self._record.route
        return escalation.score(
            self._c.confidence,
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
