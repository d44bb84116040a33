"""`cascade train fit-scorer --from-nats`, `evaluate --from-nats` and `publish --from-nats` for the answer
scorer on a real nats-server: a durable's unread outcomes (with answer texts and a second opinion per
answer) train once, the card names what was read and the held-back slice, the model loads in the
gateway's confidence registry, and evaluate and the gate score it against the scorer in service."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from cascade.v1 import common_pb2, events_pb2
from classifier.confidence import Evidence
from classifier.confidence.registry import load_confidence
from services.cli.main import main as cascade_main
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, OutcomeSettings
from services.outcomes.stream import ensure_stream
from tests.support.data import MMLU_PRO
from training.data import PairData, split_masks

SMALL, SECOND, LARGE = "Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"
pytestmark = pytest.mark.usefixtures("routing_data")  # fails, never skips, without the shared data


def recorded(n: int) -> list[dict]:
    """The first n MMLU-Pro prompts with each model's (response, score)."""
    t = pq.read_table(MMLU_PRO, columns=["prompt_id", "prompt", "model", "score", "response"]).to_pandas()
    t = t[t.model.isin([SMALL, SECOND, LARGE])]
    ids = t.prompt_id.drop_duplicates().iloc[:n]
    by = t.set_index(["prompt_id", "model"])
    return [
        {"id": pid, "prompt": by.loc[(pid, SMALL), "prompt"], **{m: by.loc[(pid, m)] for m in (SMALL, SECOND, LARGE)}}
        for pid in ids
    ]


def attempt(tier: str, model: str, purpose: str, answer, *, texts: bool, rank: int) -> events_pb2.TierAttempt:
    text = (answer["response"] or "") if texts else ""
    return events_pb2.TierAttempt(
        tier=tier, model=model, purpose=purpose, replay_score=answer["score"], text=text, tier_rank=rank
    )


def outcome(i: int, p: dict, *, texts: bool) -> events_pb2.OutcomeEvent:
    """A replayed request as the replay config records it: a second opinion beside the small answer,
    escalated to the large tier on every other request."""
    now = Timestamp()
    now.GetCurrentTime()
    attempts = [
        attempt("second", SECOND, "second_opinion", p[SECOND], texts=texts, rank=0),
        attempt("small", SMALL, "answer", p[SMALL], texts=texts, rank=0),
    ]
    if i % 2:
        attempts.append(attempt("large", LARGE, "escalation", p[LARGE], texts=texts, rank=1))
    return events_pb2.OutcomeEvent(
        schema_version=1,
        request_id=f"req-{i}",
        time=now,
        tags={"dataset": "mmlu-pro", "prompt_id": p["id"]},
        prompt_sha256=hashlib.sha256(p["prompt"].encode()).hexdigest(),
        prompt_text=p["prompt"],
        route=common_pb2.RouteSummary(
            tier="large" if i % 2 else "small",
            escalated=bool(i % 2),
            router_score=0.4,
            router_model_version="router-v",
            second_opinion_tier="second",
        ),
        attempts=attempts,
    )


async def publish(url: str, prompts: list[dict], *, texts: bool = True) -> None:
    nc = await connect_nats(url, name="t")
    try:
        js = nc.jetstream()
        await ensure_stream(js, OutcomeSettings())
        for i, p in enumerate(prompts):
            await js.publish(subjects.OUTCOMES, outcome(i, p, texts=texts).SerializeToString())
    finally:
        await nc.drain()


async def acknowledged(url: str, durable: str) -> tuple[int, int]:
    """(stream sequence acknowledged up to, events still waiting for an ack) of a durable."""
    nc = await connect_nats(url, name="t")
    try:
        info = await nc.jetstream().consumer_info(OutcomeSettings().stream, durable)
    finally:
        await nc.drain()
    return info.ack_floor.stream_seq, info.num_ack_pending


async def run(capsys, *argv: str) -> tuple[int, str, str]:
    def cascade() -> int:
        try:
            cascade_main(list(argv))
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0

    capsys.readouterr()
    rc = await asyncio.to_thread(cascade)
    out = capsys.readouterr()
    return rc, out.out, out.err


def config_file(nats_server, tmp_path: Path) -> str:
    tiers = "".join(
        f"  {name}:\n    backend: replay\n    replay: {{data: {MMLU_PRO}, model: {model}}}\n"
        for name, model in (("small", SMALL), ("second", SECOND), ("large", LARGE))
    )
    path = tmp_path / "cascade.yaml"
    path.write_text(
        f"nats:\n  url: {nats_server.url}\nrouter:\n  registry_bucket: models\n"
        f"escalation:\n  second_opinion: {{tier: second, mode: parallel}}\ntiers:\n{tiers}"
    )
    return str(path)


async def test_fit_scorer_from_nats_trains_once_and_is_compared_with_the_serving_scorer(nats_server, tmp_path, capsys):
    config = config_file(nats_server, tmp_path)
    prompts = recorded(160)
    await publish(nats_server.url, prompts)
    fit = ("train", "fit-scorer", "--from-nats", "--config", config, "--durable", "scorer-t")

    rc, out, err = await run(capsys, *fit, "--out", str(tmp_path / "m1"))
    assert rc == 0, err
    # One row per small answer (the second opinion's and the top tier's answers are never judged).
    assert "read 160 outcomes" in out and "160 labelled answers below the top tier" in out and "{1: 160}" in out
    card = json.loads((tmp_path / "m1" / "model_card.json").read_text())
    stream = card["training_stream"]
    assert stream["durable"] == "scorer-t" and stream["outcomes"] == 160 and stream["stream_seq"] == [1, 160]
    assert card["held_back"]["split"] == "test" and card["held_back"]["seed"] == 0
    assert card["training_sources"] == ["mmlu_pro"] and card["small_models"] == [SMALL]
    ids = PairData(pd.DataFrame({"source": "mmlu_pro", "prompt_id": [p["id"] for p in prompts]}))
    held = int(split_masks(ids, seed=0)["test"].sum())
    assert held > 0 and card["split"]["test"] == held == card["metrics"]["test"]["n"]

    scorer = load_confidence("scorer", tmp_path / "m1")  # as the gateway loads escalation.confidence_model
    assert scorer.version == card["version"]
    conf = scorer.confidence([Evidence(prompt="2+2?", answer="The answer is 4.", others=("4",), router_score=0.4)])
    assert 0.0 <= float(conf[0]) <= 1.0

    assert await acknowledged(nats_server.url, "scorer-t") == (160, 0)  # all acked once the model was written
    rc, out, err = await run(capsys, *fit, "--out", str(tmp_path / "m2"))
    assert rc == 1 and "read 0 outcomes" in out, err  # resumable: nothing new on the durable

    shipped = ("train", "publish", "--model", str(DEFAULT_CONFIDENCE_MODEL), "--config", config)
    assert (await run(capsys, *shipped))[0] == 0
    evaluate = ("train", "evaluate", "--model", str(tmp_path / "m1"), "--from-nats", "--config", config)
    rc, out, err = await run(capsys, *evaluate)
    assert rc == 0, err
    # The shipped scorer was trained on mmlu_pro with seed 0 too: the slice held back from both is the same.
    assert f"held back from {card['version']} and " in out and f": {held} answers" in out
    report = json.loads((tmp_path / "m1" / "evaluation_scorer.json").read_text())
    assert report["serving"]["version"] != report["model_version"] and report["metrics"]["n"] == held

    gate = ("train", "publish", "--model", str(tmp_path / "m1"), "--config", config, "--from-nats")
    rc, out, err = await run(capsys, *gate, "--min-gain", "-1")
    assert rc == 0 and f"ROC AUC on {held} held-out answers" in out, err


async def test_fit_scorer_from_nats_refuses_outcomes_without_answer_texts(nats_server, tmp_path, capsys):
    config = config_file(nats_server, tmp_path)
    await publish(nats_server.url, recorded(20), texts=False)
    fit = ("train", "fit-scorer", "--from-nats", "--config", config, "--durable", "d", "--out", str(tmp_path / "m"))
    rc, out, err = await run(capsys, *fit)
    assert rc == 1 and "outcomes.store_answer_text" in err and "20 without their text" in out
    assert not (tmp_path / "m").exists()
    rc, out, err = await run(capsys, *fit)
    assert rc == 1 and "read 20 outcomes" in out, err  # given back (nak), not acknowledged
