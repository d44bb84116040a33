"""Labelled traffic -> training pairs (training.traffic): prompt identity, tier coverage, held-back slice."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from training.data import split_masks
from training.labels import LabelRow
from training.traffic import TRAFFIC_SOURCE, held_back_from, traffic_pairs

SMALL, LARGE = "s-7b", "l-70b"


def row(prompt: str, model: str, score: float, *, request: str, tags: dict[str, str] | None = None) -> LabelRow:
    return LabelRow(
        request_id=request,
        time=datetime(2026, 12, 1, tzinfo=UTC),
        prompt_sha256=f"sha-{prompt}",
        prompt=prompt,
        tier="small" if model == SMALL else "large",
        model=model,
        purpose="answer",
        score=score,
        source="replay",
        response=None,
        tags=tags or {},
    )


def test_only_prompts_with_both_tiers_train_and_the_summary_counts_them():
    rows = [row("a", SMALL, 1.0, request="1"), row("a", LARGE, 1.0, request="1")]
    rows += [row("b", SMALL, 0.0, request="2"), row("c", SMALL, 1.0, request="3"), row("d", LARGE, 0.0, request="4")]
    # The same prompt asked twice is one prompt with its mean score.
    rows += [row("a", SMALL, 0.0, request="5")]
    rows += [row("", SMALL, 1.0, request="6")]  # no prompt text recorded: cannot train
    data, cover = traffic_pairs(rows, small=SMALL, large=LARGE)
    assert (cover.prompts, cover.small, cover.large, cover.both) == (4, 3, 2, 1)
    assert data.frame[["prompt_id", "small", "large"]].values.tolist() == [["sha-a", 0.5, 1.0]]
    assert data.frame["source"].tolist() == [TRAFFIC_SOURCE]


def test_a_replayed_prompt_keeps_its_benchmark_source_and_id():
    tags = {"dataset": "mmlu-pro", "prompt_id": "mmlupro:7"}
    rows = [row("q", SMALL, 0.0, request="1", tags=tags), row("q", LARGE, 1.0, request="1", tags=tags)]
    data, _ = traffic_pairs(rows, small=SMALL, large=LARGE)
    assert data.frame[["source", "prompt_id"]].values.tolist() == [["mmlu_pro", "mmlupro:7"]]


def test_the_held_back_slice_is_the_test_split_of_every_model_that_trained_on_the_source():
    prompts = [f"p{i}" for i in range(400)]
    rows = [row(p, m, 1.0, request=p) for p in prompts for m in (SMALL, LARGE)]
    data, _ = traffic_pairs(rows, small=SMALL, large=LARGE)
    seed0, seed1 = ({"training_sources": [TRAFFIC_SOURCE], "split": {"seed": s}} for s in (0, 1))
    test0, test1 = split_masks(data, seed=0)["test"], split_masks(data, seed=1)["test"]
    assert len(held_back_from(data, [seed0])) == int(test0.sum())
    assert len(held_back_from(data, [seed0, seed1])) == int((test0 & test1).sum()) > 0
    files_only = {"training_data": ["../shared/data/routing/mmlu_pro.parquet"], "split": {"seed": 0}}
    assert len(held_back_from(data, [files_only])) == len(data)  # never trained on traffic: all of it
    assert np.isin(held_back_from(data, [seed0]).frame["prompt_id"], data.frame["prompt_id"][test0]).all()


def test_stream_options_without_from_nats_are_refused(tmp_path):
    from training.cli import main

    with pytest.raises(ValueError, match="add --from-nats"):
        main(["train", "fit", "--durable", "trainer", "--out", str(tmp_path / "m")])
    with pytest.raises(ValueError, match="needs --data FILE, --from-nats"):
        main(["train", "fit", "--out", str(tmp_path / "m")])
