"""Labels from traffic: which source labels which answer, and how feedback joins by request id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from cascade.v1 import common_pb2, events_pb2
from services.core.settings import OutcomeSettings
from training.labels import label_rows

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ts(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(T0 + timedelta(seconds=seconds))
    return out


def attempt(tier: str, model: str, purpose: str = "answer", *, text: str = "", **kw) -> events_pb2.TierAttempt:
    return events_pb2.TierAttempt(tier=tier, model=model, purpose=purpose, text=text, **kw)


def outcome(request_id: str, attempts, *, tier: str, **route) -> events_pb2.OutcomeEvent:
    return events_pb2.OutcomeEvent(
        request_id=request_id,
        time=ts(0),
        prompt_sha256="ab" * 32,
        prompt_text="What is 2+2?",
        attempts=attempts,
        route=common_pb2.RouteSummary(tier=tier, **route),
    )


def feedback(request_id: str, score: float, at: float) -> events_pb2.FeedbackEvent:
    return events_pb2.FeedbackEvent(request_id=request_id, score=score, time=ts(at))


def labels(outcomes, fbs=(), window_s: float = 60.0, **kw):
    rows, summary = label_rows(outcomes, fbs, window_s=window_s, **kw)
    return {(r.request_id, r.model): (r.score, r.source) for r in rows}, summary


def test_replay_ground_truth_wins_and_labels_every_tier_that_answered():
    event = outcome(
        "r1",
        [
            attempt("small", "s-7b", replay_score=0.0),
            attempt("second", "m-8b", "second_opinion", replay_score=1.0),
            attempt("large", "l-70b", "escalation", replay_score=1.0),
        ],
        tier="large",
        escalated=True,
    )
    got, summary = labels([event], [feedback("r1", 0.2, 5)])
    assert got == {("r1", "s-7b"): (0.0, "replay"), ("r1", "m-8b"): (1.0, "replay"), ("r1", "l-70b"): (1.0, "replay")}
    assert summary.by_source == {"replay": 3} and summary.feedback == 1


def test_the_latest_feedback_within_the_window_labels_the_returned_answer_only():
    event = outcome(
        "r1",
        [attempt("small", "s-7b"), attempt("large", "l-70b", "escalation")],
        tier="large",
        escalated=True,
    )
    fbs = [feedback("r1", 0.3, 10), feedback("r1", 0.8, 50), feedback("r1", 0.1, 61), feedback("ghost", 1.0, 1)]
    got, summary = labels([event], fbs)
    assert got == {("r1", "l-70b"): (0.8, "feedback")}  # the small answer has no text to compare: no label
    assert (summary.feedback, summary.feedback_late, summary.feedback_orphan) == (4, 1, 1)
    assert summary.unlabelled == 1


def test_feedback_sent_before_the_outcome_was_stored_counts():
    event = outcome("r1", [attempt("small", "s-7b")], tier="small")
    got, _ = labels([event], [feedback("r1", 1.0, -0.5)])
    assert got == {("r1", "s-7b"): (1.0, "feedback")}


@pytest.mark.parametrize(("large_text", "expected"), [("The answer is (B).", 1.0), ("The answer is (C).", 0.0)])
def test_an_escalation_pair_labels_the_small_answer_by_agreement_with_the_large(large_text, expected):
    event = outcome(
        "r1",
        [
            attempt("small", "s-7b", text="I think the answer is (B)."),
            attempt("large", "l-70b", "escalation", text=large_text),
        ],
        tier="large",
        escalated=True,
    )
    got, _ = labels([event], [feedback("r1", 0.9, 3)])
    assert got == {("r1", "s-7b"): (expected, "escalation"), ("r1", "l-70b"): (0.9, "feedback")}


def test_a_shadow_answer_also_judges_the_answer():
    event = outcome(
        "r1",
        [attempt("small", "s-7b", text="42"), attempt("large", "l-70b", "shadow", text="It is 42")],
        tier="small",
    )
    got, _ = labels([event])
    assert got == {("r1", "s-7b"): (1.0, "escalation")}


@pytest.mark.parametrize(("shadow_text", "expected"), [("It is 42", 1.0), ("It is 41", 0.0)])
def test_a_shadow_above_the_answer_judges_it(shadow_text, expected):
    attempts = [
        attempt("small", "s-7b", text="42", tier_rank=0),
        attempt("large", "l-70b", "shadow", text=shadow_text, tier_rank=1),
    ]
    got, _ = labels([outcome("r1", attempts, tier="small")])
    assert got == {("r1", "s-7b"): (expected, "escalation")}


@pytest.mark.parametrize(("shadow_text", "expected"), [("42", 1.0), ("41", 0.0)])
def test_a_shadow_below_the_answer_is_judged_by_it(shadow_text, expected):
    # exploration of a request the router sent to the large tier: the small tier's shadow gets the label
    attempts = [
        attempt("large", "l-70b", text="It is 42", tier_rank=1),
        attempt("small", "s-7b", "shadow", text=shadow_text, tier_rank=0),
    ]
    got, _ = labels([outcome("r1", attempts, tier="large")])
    assert got == {("r1", "s-7b"): (expected, "escalation")}


def test_a_failed_shadow_labels_nothing():
    error = events_pb2.ErrorInfo(code=events_pb2.ERROR_CODE_DEADLINE_EXCEEDED)
    failed = events_pb2.TierAttempt(tier="small", model="s-7b", purpose="shadow", tier_rank=0, error=error)
    answer = attempt("large", "l-70b", text="It is 42", tier_rank=1)
    got, _ = labels([outcome("r1", [answer, failed], tier="large")])
    assert got == {}


def test_second_opinion_agreement_is_the_weakest_source():
    attempts = [attempt("small", "s-7b"), attempt("second", "m-8b", "second_opinion")]
    event = outcome("r1", attempts, tier="small", second_opinion_tier="second", agreement=0.0)
    got, _ = labels([event])
    assert got == {("r1", "s-7b"): (0.0, "second_opinion")}
    got, _ = labels([event], [feedback("r1", 1.0, 1)])
    assert got == {("r1", "s-7b"): (1.0, "feedback")}


def test_a_failed_request_takes_no_feedback_and_failed_attempts_no_label():
    event = outcome(
        "r1",
        [
            attempt("small", "s-7b", replay_score=1.0),
            attempt("large", "l-70b", "escalation", error=events_pb2.ErrorInfo(code=4, message="down")),
        ],
        tier="large",
    )
    event.error.code = events_pb2.ERROR_CODE_UNAVAILABLE
    got, summary = labels([event], [feedback("r1", 0.0, 1)])
    assert got == {("r1", "s-7b"): (1.0, "replay")} and summary.attempts == 1


def test_a_tier_recorded_without_its_model_takes_the_configured_one():
    event = outcome("r1", [attempt("small", "")], tier="small")
    fbs = [feedback("r1", 1.0, 1)]
    assert labels([event], fbs)[1].no_model == 1
    assert labels([event], fbs, tier_models={"small": "s-7b"})[0] == {("r1", "s-7b"): (1.0, "feedback")}


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ({"feedback_window_s": 0}, "greater than 0"),
        ({"feedback_window_s": 3 * 86400, "max_age_days": 2}, "must not exceed outcomes.max_age_days"),
        ({"seen_stream": "CASCADE_OUTCOMES"}, "must differ"),
    ],
)
def test_the_feedback_window_must_fit_in_the_outcomes_retention(outcomes, message):
    with pytest.raises(ValueError, match=message):
        OutcomeSettings(**outcomes)
