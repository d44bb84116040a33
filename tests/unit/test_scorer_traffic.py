"""Scorer rows from traffic: each judged answer gets the other answers the gateway judged it with."""

from __future__ import annotations

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from cascade.v1 import common_pb2, events_pb2
from classifier.confidence import Evidence
from classifier.confidence.features import features
from services.core.settings import CascadeSettings
from training.labels import label_rows
from training.scorer_traffic import traffic_rows

TIERS = {
    name: {"backend": "openai", "openai": {"base_url": "http://127.0.0.1:1/v1", "model": model}}
    for name, model in (("small", "S"), ("second", "O"), ("mid", "M"), ("large", "L"))
}
SETTINGS = CascadeSettings(tiers=TIERS, router={"tiers": ["small", "mid", "large"]})
PROMPT = "Which is right?\nOptions: [a, b]"
A, B = "The answer is (A)", "The answer is (B)"


def attempt(
    tier: str, model: str, purpose: str, text: str, score: float, rank: int, samples=()
) -> events_pb2.TierAttempt:
    return events_pb2.TierAttempt(
        tier=tier, model=model, purpose=purpose, text=text, replay_score=score, tier_rank=rank, sample_texts=samples
    )


def event(attempts: list[events_pb2.TierAttempt], *, tier: str) -> events_pb2.OutcomeEvent:
    return events_pb2.OutcomeEvent(
        request_id="r1",
        time=Timestamp(seconds=1_790_000_000),
        prompt_sha256="ab" * 32,
        prompt_text=PROMPT,
        tags={"dataset": "mmlu-pro", "prompt_id": "p1"},
        route=common_pb2.RouteSummary(tier=tier, router_score=0.3, router_model_version="v"),
        attempts=attempts,
    )


def rows_of(e: events_pb2.OutcomeEvent):
    labelled, _ = label_rows([e], [], window_s=60.0, tier_models={})
    return traffic_rows(labelled, [e], settings=SETTINGS)


def test_an_escalated_answer_is_judged_with_every_earlier_answer_and_the_first_with_samples_and_second_opinion():
    e = event(
        [
            attempt("second", "O", "second_opinion", B, 0.0, 0),
            # The vote chose the sample "(A)": the others are the remaining samples.
            attempt("small", "S", "answer", A, 1.0, 0, samples=(A, B)),
            attempt("mid", "M", "escalation", A, 1.0, 1),
            attempt("large", "L", "escalation", A, 1.0, 2),
        ],
        tier="large",
    )
    t = rows_of(e)
    assert list(t.rows.model) == ["S", "M"]  # the top tier's and the second opinion's answers are never judged
    assert list(t.rows.k) == [2, 2]
    expected = features(
        [
            Evidence(prompt=PROMPT, answer=A, others=(B, B), router_score=0.3),
            Evidence(prompt=PROMPT, answer=A, others=(B, A), router_score=0.3),
        ]
    )
    np.testing.assert_array_equal(t.rows.x, expected)
    assert list(t.rows.large) == [1.0, 1.0] and list(t.rows.y) == [1, 1]
    assert t.keys.to_dict("records") == [{"source": "mmlu_pro", "prompt_id": "p1"}] * 2


def test_answers_without_text_are_counted_not_used():
    e = event(
        [attempt("small", "S", "answer", "", 1.0, 0), attempt("large", "L", "escalation", "", 0.0, 2)], tier="large"
    )
    t = rows_of(e)
    assert len(t) == 0 and t.skipped_no_text == 1
