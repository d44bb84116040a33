"""Answer-scorer rows from labelled traffic: each labelled answer below the top tier, with the other
answers the gateway judged it with, through the request path's own feature function.

The others of an attempt are what ``services.gateway.small`` gives the scorer: its own other samples
(self-consistency), the second opinion (for the first answer), and for an escalated answer every
earlier answer of the request (lower tiers', second opinions). A shadow (exploration) has only its
samples. When the vote chose another sample than the streamed one, the event keeps the chosen text
and the samples, not the streamed one: the others are the samples minus the chosen one.

Needs the answer texts (``outcomes.store_answer_text``) and the prompts (``outcomes.store_prompt_text``);
the router score is the request's when a router model scored it; logprobs are not recorded, so their
features are absent (as the scorer's logprob prior expects). A row's large-tier score is the top tier
model's label for the same prompt (any request), NaN when there is none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cascade.v1 import events_pb2
from classifier.confidence import Evidence
from classifier.confidence.features import features
from services.core.settings import CascadeSettings
from training.labels import SOURCES, LabelRow
from training.scorer_data import Rows
from training.traffic import Labelled, held_back_mask, long_frame, read_all, tier_models

# Second-opinion labels are the agreement share with the others, which is the scorer's own agreement
# feature: training on them teaches the feature back, so they are left out unless asked for.
DEFAULT_LABEL_SOURCES = tuple(s for s in SOURCES if s != "second_opinion")
JUDGED = ("answer", "escalation", "shadow")
NEEDS_TEXT = (
    "no labelled answer in the stream carries its text and prompt: turn on outcomes.store_answer_text "
    "(and outcomes.store_prompt_text) in the gateway's config; the answer scorer learns from answer texts"
)


@dataclass(frozen=True)
class TrafficRows:
    """Scorer rows with each row's prompt identity (``keys``: source, prompt_id; training.traffic)."""

    rows: Rows
    keys: pd.DataFrame
    skipped_no_text: int  # labelled answers without their text or prompt
    small_models: tuple[str, ...]
    large_model: str

    def subset(self, mask: np.ndarray) -> Rows:
        r = self.rows
        return Rows(r.x[mask], r.y[mask], r.small[mask], r.large[mask], r.model[mask], r.k[mask])

    def __len__(self) -> int:
        return len(self.rows.y)


def top_model(settings: CascadeSettings) -> tuple[str, str]:
    """(tier, model) of the top of router.tiers: its answers are never judged, its labels are the large score."""
    tier = settings.router.tiers[-1]
    return tier, tier_models(settings).get(tier, "")


def traffic_rows(
    rows: Sequence[LabelRow],
    outcomes: Iterable[events_pb2.OutcomeEvent],
    *,
    settings: CascadeSettings,
    sources: Sequence[str] = DEFAULT_LABEL_SOURCES,
) -> TrafficRows:
    """One scorer row per labelled answer (of ``sources``) below the top tier that has text and prompt."""
    top_tier, large = top_model(settings)
    events = {e.request_id: e for e in outcomes}
    judged = [r for r in rows if r.tier != top_tier and r.purpose in JUDGED and r.source in sources]
    usable = [r for r in judged if r.response and r.prompt and r.request_id in events]
    keys = _keys(usable)
    evidence = [_evidence(events[r.request_id], r) for r in usable]
    x = features(evidence)
    scores = np.asarray([r.score for r in usable], dtype=np.float64)
    built = Rows(
        x=x,
        y=(scores >= 0.5).astype(np.int64),
        small=scores,
        large=_large_scores(rows, keys, large=large),
        model=np.asarray([r.model for r in usable], dtype=object),
        k=np.asarray([len(e.others) for e in evidence], dtype=np.int64),
    )
    small_models = tuple(dict.fromkeys(r.model for r in usable))
    return TrafficRows(built, keys, len(judged) - len(usable), small_models, large)


def _keys(rows: Sequence[LabelRow]) -> pd.DataFrame:
    frame = long_frame(rows)
    return frame[["source", "prompt_id"]].reset_index(drop=True)


def _large_scores(rows: Sequence[LabelRow], keys: pd.DataFrame, *, large: str) -> np.ndarray:
    labelled = long_frame([r for r in rows if r.model == large])
    by_prompt = labelled.groupby(["source", "prompt_id"])["score"].last() if len(labelled) else pd.Series()
    index = pd.MultiIndex.from_frame(keys) if len(keys) else pd.MultiIndex.from_tuples([], names=keys.columns)
    return by_prompt.reindex(index).to_numpy(dtype=np.float64)


def _evidence(event: events_pb2.OutcomeEvent, row: LabelRow) -> Evidence:
    i = next(
        j
        for j, a in enumerate(event.attempts)
        if a.tier == row.tier and a.purpose == row.purpose and not a.error.code and a.text == row.response
    )
    attempt = event.attempts[i]
    route = event.route
    return Evidence(
        prompt=event.prompt_text,
        answer=attempt.text,
        others=tuple(_others(event, i)),
        router_score=route.router_score if route.router_model_version else None,
    )


def _others(event: events_pb2.OutcomeEvent, i: int) -> list[str]:
    attempt = event.attempts[i]
    samples = list(attempt.sample_texts)
    if attempt.text in samples:  # the vote chose a sample: it is the answer, not an other
        samples.remove(attempt.text)
    if attempt.purpose == "shadow":
        return samples

    def earlier(j: int, a: events_pb2.TierAttempt) -> bool:
        if j == i or a.error.code or not a.text or a.purpose == "shadow":
            return False
        return a.purpose == "second_opinion" or (attempt.purpose == "escalation" and j < i)

    return samples + [a.text for j, a in enumerate(event.attempts) if earlier(j, a)]


def label_sources(spec: str | None) -> tuple[str, ...]:
    """``--label-sources A,B`` -> the label sources, checked (unset: DEFAULT_LABEL_SOURCES)."""
    if not spec:
        return DEFAULT_LABEL_SOURCES
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise ValueError(f"--label-sources {spec!r}: unknown {unknown}; known: {', '.join(SOURCES)}")
    return names


def read_rows(labelled: Labelled, settings: CascadeSettings, sources: tuple[str, ...], *, url: str) -> TrafficRows:
    """The scorer rows of the labelled events, with a line of what the stream held."""
    traffic = traffic_rows(labelled.rows, labelled.traffic.outcomes, settings=settings, sources=sources)
    print(labelled.line(url))
    k = Counter(traffic.rows.k.tolist())
    print(
        f"{len(traffic)} labelled answers below the top tier (label sources {', '.join(sources)}), by number of "
        f"other answers: {dict(sorted(k.items()))}; {traffic.skipped_no_text} without their text or prompt"
    )
    if len(traffic) == 0 and traffic.skipped_no_text:
        raise ValueError(NEEDS_TEXT)
    return traffic


async def held_back_rows(
    settings: CascadeSettings, *, url: str, since: str | None, cards: list[dict], sources: tuple[str, ...]
) -> TrafficRows:
    """The stream's scorer rows of prompts no card's scorer was trained on (acks nothing)."""
    from services.cli.export import parse_since

    labelled = await read_all(settings, url=url, since=parse_since(since) if since else None)
    traffic = read_rows(labelled, settings, sources, url=url)
    keep = held_back_mask(traffic.keys, cards)
    return TrafficRows(traffic.subset(keep), traffic.keys[keep], 0, traffic.small_models, traffic.large_model)
