"""Labels from traffic: outcome and feedback events -> one labelled row per (request, model that answered).

Each attempt that produced an answer gets at most one label, from the strongest source that has one
(``SOURCES``, strongest first):

1. ``replay``: the recorded benchmark score of a replay tier's answer (``TierAttempt.replay_score``):
   ground truth for exactly that answer.
2. ``feedback``: the caller's score (the Feedback RPC) for the answer it was given, i.e. only the
   attempt that returned the answer. Feedback is joined by request id; the latest one within
   ``window_s`` of the outcome counts (feedback sent while the request still ran counts too), later
   feedback is ignored.
3. ``escalation``: an answer compared with the answer of the larger tier that was asked after it
   (purpose ``escalation``, or ``shadow`` for exploration): 1 when their final answers agree (the
   cheaper tier was right), else 0. A shadow on a cheaper tier than the returned answer is itself
   labelled so, by the answer (``TierAttempt.tier_rank`` tells which tier is larger). Needs the
   answer texts (``outcomes.store_answer_text``).
4. ``second_opinion``: the share of other answers that agreed with the small answer
   (``RouteSummary.agreement``) when a second-opinion tier was asked: the weakest signal, in [0, 1].

The reference answers themselves (a large tier's, a second opinion's) get a label only from a source
about them (replay ground truth, or feedback when they were returned).

:func:`read_traffic` reads the events from JetStream (the whole stream, or a durable consumer's
unread part); :func:`label_rows` is plain logic over them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cascade.v1 import events_pb2
from classifier.answers import final_answer, same_answer
from services.outcomes import read_events

SOURCES = ("replay", "feedback", "escalation", "second_opinion")


@dataclass(frozen=True, kw_only=True, slots=True)
class LabelRow:
    request_id: str
    time: datetime
    prompt_sha256: str
    prompt: str  # "" unless outcomes.store_prompt_text was on
    tier: str
    model: str
    purpose: str
    score: float
    source: str  # one of SOURCES
    response: str | None  # None unless outcomes.store_answer_text was on
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LabelSummary:
    outcomes: int = 0
    attempts: int = 0  # attempts that answered (no error)
    unlabelled: int = 0  # of those, with no label from any source
    no_model: int = 0  # answered, but the model is unknown (an event from before models were recorded)
    by_source: Counter[str] = field(default_factory=Counter)
    feedback: int = 0
    feedback_late: int = 0  # arrived after the window: ignored
    feedback_orphan: int = 0  # for a request id with no outcome among those read

    @property
    def rows(self) -> int:
        return sum(self.by_source.values())


@dataclass
class Traffic:
    outcomes: list[events_pb2.OutcomeEvent] = field(default_factory=list)
    feedback: list[events_pb2.FeedbackEvent] = field(default_factory=list)
    held: list[Msg] = field(default_factory=list)  # read with hold=True: not yet acknowledged

    async def ack(self) -> None:
        """The events are used: the durable consumer will not deliver them again."""
        for msg in self.held:
            await msg.ack()
        self.held.clear()

    async def release(self) -> None:
        """The events were not used (a failed fit): the next read delivers them again."""
        for msg in self.held:
            await msg.nak()
        self.held.clear()


async def read_traffic(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str | None = None,
    since: datetime | None = None,
    hold: bool = False,
) -> Traffic:
    """The outcome and feedback events not yet acknowledged by ``durable`` (None: the whole stream),
    from ``since`` on (see :func:`services.outcomes.read_events`). ``hold``: acknowledge nothing yet;
    the caller calls :meth:`Traffic.ack` once it has used them, or :meth:`Traffic.release`."""
    traffic = Traffic()
    events = read_events(js, stream=stream, durable=durable, since=since, hold=traffic.held if hold else None)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, events_pb2.OutcomeEvent):
                traffic.outcomes.append(event)
            elif isinstance(event, events_pb2.FeedbackEvent):
                traffic.feedback.append(event)
    return traffic


def label_rows(
    outcomes: Iterable[events_pb2.OutcomeEvent],
    feedback: Iterable[events_pb2.FeedbackEvent],
    *,
    window_s: float,
    tier_models: Mapping[str, str] | None = None,
) -> tuple[list[LabelRow], LabelSummary]:
    """Join outcomes with feedback and label every answer. ``tier_models``: a tier's model name, for
    attempts recorded without one."""
    events = list(outcomes)
    summary = LabelSummary(outcomes=len(events))
    scores = _feedback_scores(events, feedback, window_s=window_s, summary=summary)
    rows: list[LabelRow] = []
    for event in events:
        rows.extend(_rows(event, scores.get(event.request_id), tier_models or {}, summary))
    return rows, summary


def _feedback_scores(
    outcomes: list[events_pb2.OutcomeEvent],
    feedback: Iterable[events_pb2.FeedbackEvent],
    *,
    window_s: float,
    summary: LabelSummary,
) -> dict[str, float]:
    """The latest feedback score per request id within the window (equal times: the later event)."""
    ended = {e.request_id: e.time.ToDatetime() for e in outcomes}
    latest: dict[str, tuple[datetime, float]] = {}
    for fb in feedback:
        summary.feedback += 1
        if fb.request_id not in ended:
            summary.feedback_orphan += 1
            continue
        at = fb.time.ToDatetime()
        if (at - ended[fb.request_id]).total_seconds() > window_s:
            summary.feedback_late += 1
            continue
        if fb.request_id not in latest or at >= latest[fb.request_id][0]:
            latest[fb.request_id] = (at, fb.score)
    return {rid: score for rid, (_, score) in latest.items()}


def _rows(
    event: events_pb2.OutcomeEvent, feedback: float | None, tier_models: Mapping[str, str], summary: LabelSummary
) -> list[LabelRow]:
    answer = _returned(event)
    rows, models = [], set()
    for i, attempt in enumerate(event.attempts):
        if attempt.error.code:
            continue
        summary.attempts += 1
        model = attempt.model or tier_models.get(attempt.tier, "")
        label = _label(event, i, feedback if i == answer else None)
        if label is None:
            summary.unlabelled += 1
            continue
        if not model:
            summary.no_model += 1
            continue
        if model in models:  # one row per (request, model); attempts are in order, the first wins
            continue
        models.add(model)
        summary.by_source[label[1]] += 1
        rows.append(_row(event, attempt, model, label))
    return rows


def _row(
    event: events_pb2.OutcomeEvent, attempt: events_pb2.TierAttempt, model: str, label: tuple[float, str]
) -> LabelRow:
    return LabelRow(
        request_id=event.request_id,
        time=event.time.ToDatetime(),
        prompt_sha256=event.prompt_sha256,
        prompt=event.prompt_text,
        tier=attempt.tier,
        model=model,
        purpose=attempt.purpose,
        score=label[0],
        source=label[1],
        response=attempt.text or None,
        tags=dict(event.tags),
    )


def _label(event: events_pb2.OutcomeEvent, i: int, feedback: float | None) -> tuple[float, str] | None:
    """(score, source) of attempt ``i`` from the strongest source that has one."""
    attempt = event.attempts[i]
    if attempt.HasField("replay_score"):
        return attempt.replay_score, "replay"
    if feedback is not None:
        return feedback, "feedback"
    reference = _reference(event, i)
    if reference is not None and attempt.text:
        agree = same_answer(final_answer(attempt.text), final_answer(reference.text))
        return float(agree), "escalation"
    if attempt.purpose == "answer" and event.route.second_opinion_tier and event.route.HasField("agreement"):
        return event.route.agreement, "second_opinion"
    return None


def _reference(event: events_pb2.OutcomeEvent, i: int) -> events_pb2.TierAttempt | None:
    """The answer of a larger tier to judge attempt ``i`` by: a later escalation or a shadow above it;
    for a shadow below the answer (exploration of a request answered by the top tier), the answer returned.

    Which tier is larger comes from ``tier_rank``; events without it (equal ranks) keep the order of
    asking: a later shadow is the reference, an earlier answer is never judged by a shadow.
    """
    attempt = event.attempts[i]

    def usable(a: events_pb2.TierAttempt) -> bool:
        return not a.error.code and bool(a.text) and a.tier != attempt.tier

    if attempt.purpose == "shadow":
        j = _returned(event)
        returned = event.attempts[j] if j is not None else None
        if returned is not None and usable(returned) and returned.tier_rank > attempt.tier_rank:
            return returned
        return None
    if attempt.purpose not in ("answer", "escalation"):
        return None
    return next(
        (
            a
            for a in event.attempts[i + 1 :]
            if usable(a) and (a.purpose == "escalation" or (a.purpose == "shadow" and a.tier_rank >= attempt.tier_rank))
        ),
        None,
    )


def _returned(event: events_pb2.OutcomeEvent) -> int | None:
    """Index of the attempt whose answer the caller got (None for a failed request)."""
    if event.error.code:
        return None
    for i in range(len(event.attempts) - 1, -1, -1):
        a = event.attempts[i]
        if a.tier == event.route.tier and a.purpose not in ("second_opinion", "shadow") and not a.error.code:
            return i
    return None


def routing_columns(rows: Iterable[LabelRow]) -> dict[str, list]:
    """Rows with their prompt text, as the columns of a routing-data file (shared/data/routing:
    prompt_id, dataset, task, subtask, prompt, model, score, response) plus request_id, tier,
    label_source and time. ``prompt_id`` is the prompt's SHA-256: a prompt asked twice is one prompt."""
    kept = [r for r in rows if r.prompt]
    return {
        "prompt_id": [r.prompt_sha256 for r in kept],
        "dataset": ["traffic"] * len(kept),
        "task": [r.tags.get("task", "traffic") for r in kept],
        "subtask": [r.tags.get("subtask") for r in kept],
        "prompt": [r.prompt for r in kept],
        "model": [r.model for r in kept],
        "score": [r.score for r in kept],
        "response": [r.response for r in kept],
        "request_id": [r.request_id for r in kept],
        "tier": [r.tier for r in kept],
        "label_source": [r.source for r in kept],
        "time": [r.time.replace(tzinfo=UTC) for r in kept],
    }
