"""Judging an answer below the top tier: which thresholds are in force, the majority vote, and its confidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from classifier.answers import agreement, majority
from classifier.confidence import ConfidenceModel, Evidence
from services.core.calibration import CalibrationFile
from services.core.settings import CascadeSettings
from services.gateway.domain import Reason
from services.gateway.record import Attempt


@dataclass(frozen=True, kw_only=True, slots=True)
class Thresholds:
    """The escalation threshold of each step up the tier list and the second-opinion rule, for one request."""

    steps: tuple[float, ...]  # steps[i]: an answer of router.tiers[i] below it escalates to tiers[i+1]
    second_opinion: str  # "never", "parallel" or "when_unsure"
    unsure_low: float
    unsure_high: float

    def unsure(self, confidence: float) -> bool:
        return self.second_opinion == "when_unsure" and self.unsure_low <= confidence < self.unsure_high


def thresholds(settings: CascadeSettings, calibration: CalibrationFile | None) -> Thresholds:
    """The calibrated policy file's values when there is one (they win), else the config's."""
    n_tiers = len(settings.router.tiers)
    if calibration is not None:
        p = calibration.current()
        return Thresholds(
            steps=p.step_thresholds(n_tiers),  # its tier count was checked when it was read
            second_opinion=p.second_opinion,
            unsure_low=p.unsure_low,
            unsure_high=p.unsure_high,
        )
    so = settings.escalation.second_opinion
    return Thresholds(
        steps=settings.step_thresholds(),
        second_opinion=so.mode,
        unsure_low=so.unsure_low,
        unsure_high=so.unsure_high,
    )


def vote(attempt: Attempt) -> list[str]:
    """Self-consistency: the attempt answers with the majority of its answers; returns the others."""
    answers = [attempt.streamed, *attempt.samples]
    best = majority(answers) if len(answers) > 1 else 0
    if best:
        attempt.chosen = answers[best]
    return [a for i, a in enumerate(answers) if i != best]


@dataclass(frozen=True, kw_only=True, slots=True)
class Judgement:
    confidence: float
    agreement: float | None
    escalate: bool

    @property
    def reason(self) -> Reason:
        if not self.escalate:
            return Reason.CONFIDENT
        # Most other answers disagree: the signal behind the low confidence is worth naming.
        disagree = self.agreement is not None and self.agreement < 0.5
        return Reason.DISAGREEMENT if disagree else Reason.LOW_CONFIDENCE


def score(
    model: ConfidenceModel, *, prompt: str, attempt: Attempt, others: Sequence[str], router_score: float | None
) -> float:
    """The confidence model's probability that the attempt's answer is acceptable (inline: sub-ms)."""
    evidence = Evidence(
        prompt=prompt,
        answer=attempt.text,
        # The streamed answer's logprobs say nothing about another sample chosen by the vote.
        logprobs=tuple(attempt.logprobs) if attempt.chosen is None else (),
        others=tuple(others),
        router_score=router_score,
    )
    attempt.confidence = float(model.confidence([evidence])[0])
    return attempt.confidence


def judge(confidence: float, *, answer: str, others: Sequence[str], threshold: float) -> Judgement:
    return Judgement(confidence=confidence, agreement=agreement(answer, others), escalate=confidence < threshold)
