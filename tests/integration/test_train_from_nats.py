"""`cascade train fit --from-nats`, `evaluate --from-nats` and `publish --from-nats` on a real nats-server:
a durable consumer's unread events train exactly once (a failed fit gives them back), and the held-back
slice recorded in the card is what evaluate and the publish gate score on."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.api import ConsumerConfig

from cascade.v1 import common_pb2, events_pb2
from services.cli.main import main as cascade_main
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes.stream import ensure_stream
from tests.support.data import MMLU_PRO
from training.data import PairData, split_masks

SMALL, LARGE = "Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-70B-Instruct"
PAIR = ("--small", SMALL, "--large", LARGE)
pytestmark = pytest.mark.usefixtures("routing_data")  # fails, never skips, without the shared data


def recorded(n: int, *, skip: int = 0) -> list[tuple[str, str, float, float]]:
    """(prompt id, prompt, small score, large score) of MMLU-Pro prompts skip..skip+n."""
    table = pq.read_table(MMLU_PRO, columns=["prompt_id", "prompt", "model", "score"]).to_pandas()
    wide = table[table.model.isin([SMALL, LARGE])].pivot_table(index=["prompt_id", "prompt"], columns="model")
    wide = wide["score"].dropna().iloc[skip : skip + n]
    return [(pid, prompt, row[SMALL], row[LARGE]) for (pid, prompt), row in wide.iterrows()]


def outcome(i: int, pid: str, prompt: str, small: float, large: float) -> events_pb2.OutcomeEvent:
    """A replayed request that was escalated: both tiers answered with their recorded scores."""
    now = Timestamp()
    now.GetCurrentTime()
    return events_pb2.OutcomeEvent(
        schema_version=1,
        request_id=f"req-{pid}-{i}",
        time=now,
        tags={"dataset": "mmlu-pro", "prompt_id": pid, "task": "mmlu-pro"},
        prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        prompt_text=prompt,
        route=common_pb2.RouteSummary(tier="large", escalated=True),
        attempts=[
            events_pb2.TierAttempt(tier="small", model=SMALL, purpose="answer", replay_score=small),
            events_pb2.TierAttempt(tier="large", model=LARGE, purpose="escalation", replay_score=large),
        ],
    )


async def publish(url: str, prompts: list[tuple[str, str, float, float]]) -> None:
    nc = await connect_nats(url, name="t")
    try:
        js = nc.jetstream()
        await ensure_stream(js, OutcomeSettings())
        for i, p in enumerate(prompts):
            await js.publish(subjects.OUTCOMES, outcome(i, *p).SerializeToString())
    finally:
        await nc.drain()


def cascade(*argv: str) -> int:
    try:
        cascade_main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


async def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = await asyncio.to_thread(cascade, *argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def config_file(nats_server, tmp_path: Path) -> Path:
    path = tmp_path / "cascade.yaml"
    path.write_text(f"nats:\n  url: {nats_server.url}\nrouter:\n  registry_bucket: models\n")
    return path


async def test_a_durable_trains_on_each_event_once_and_a_failed_fit_gives_them_back(nats_server, tmp_path, capsys):
    config = str(config_file(nats_server, tmp_path))
    await publish(nats_server.url, recorded(150))
    fit = ("train", "fit", "--from-nats", "--config", config, "--durable", "trainer", *PAIR, "--quiet")

    rc, out, err = await run(capsys, *fit, "--out", str(tmp_path / "m1"))
    assert rc == 0, err
    assert "read 150 outcomes" in out and "150 labelled prompts" in out and "150 with both" in out
    card = json.loads((tmp_path / "m1" / "model_card.json").read_text())
    assert card["training_sources"] == ["mmlu_pro"]  # replayed prompts keep their benchmark identity
    assert card["training_stream"]["durable"] == "trainer" and card["training_stream"]["outcomes"] == 150
    assert card["held_back"]["split"] == "test" and card["held_back"]["seed"] == 0
    assert sum(card["split"][k] for k in ("train", "validation", "test")) == 150

    await publish(nats_server.url, recorded(60, skip=150))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, out, err = await run(capsys, *fit, "--out", str(blocker / "m2"))  # fits, then cannot write
    assert rc == 1 and "read 60 outcomes" in out, err
    rc, out, err = await run(capsys, *fit, "--out", str(tmp_path / "m2"))
    assert rc == 0 and "read 60 outcomes" in out, err  # given back: exactly the 60 unread, not the first 150
    rc, out, err = await run(capsys, *fit, "--out", str(tmp_path / "m3"))
    assert rc == 1 and "read 0 outcomes" in out and "no prompt with both" in err

    whole = ("train", "fit", "--from-nats", nats_server.url, *PAIR, "--quiet", "--out", str(tmp_path / "all"))
    rc, out, err = await run(capsys, *whole)
    assert rc == 0 and "read 210 outcomes" in out, err  # no durable: the whole stream, nothing acknowledged


async def test_evaluate_and_the_publish_gate_score_the_held_back_slice(nats_server, tmp_path, capsys):
    config = str(config_file(nats_server, tmp_path))
    prompts = recorded(400)
    await publish(nats_server.url, prompts)
    base = ("train", "fit", "--from-nats", "--config", config, *PAIR, "--quiet")
    assert (await run(capsys, *base, "--out", str(tmp_path / "a")))[0] == 0
    assert (await run(capsys, *base, "--seed", "1", "--out", str(tmp_path / "b")))[0] == 0
    rc, _, err = await run(capsys, "train", "publish", "--model", str(tmp_path / "a"), "--config", config)
    assert rc == 0, err

    # The slice neither model trained on: the test split of both seeds, by (source, benchmark prompt id).
    ids = PairData(pd.DataFrame({"source": "mmlu_pro", "prompt_id": [p[0] for p in prompts]}))
    both = int((split_masks(ids, seed=0)["test"] & split_masks(ids, seed=1)["test"]).sum())
    assert both > 0

    rc, out, err = await run(
        capsys, "train", "evaluate", "--model", str(tmp_path / "b"), "--from-nats", "--config", config
    )
    assert rc == 0, err
    assert "held back from " in out and f": {both}\n" in out
    report = json.loads((tmp_path / "b" / "evaluation.json").read_text())
    assert report["n_prompts"] == both and report["serving"]["version"] != report["model_version"]

    gate = ("train", "publish", "--model", str(tmp_path / "b"), "--config", config, "--from-nats")
    rc, out, err = await run(capsys, *gate, "--min-gain", "-1")
    assert rc == 0, err
    assert f"APGR on {both} held-out prompts" in out


async def test_a_durable_that_caps_unacknowledged_events_is_refused_not_read_in_part(nats_server, tmp_path, capsys):
    await publish(nats_server.url, recorded(12))
    nc = await connect_nats(nats_server.url, name="t")
    try:  # as another reader would have created it: at most 5 events in flight
        config = ConsumerConfig(durable_name="capped", max_ack_pending=5, filter_subject=subjects.OUTCOMES_ALL)
        await nc.jetstream().add_consumer(OutcomeSettings().stream, config=config)
    finally:
        await nc.drain()
    fit = ("train", "fit", "--from-nats", nats_server.url, "--durable", "capped", *PAIR, "--quiet")
    rc, _, err = await run(capsys, *fit, "--out", str(tmp_path / "m"))
    assert rc == 1 and "allows only 5 unacknowledged events" in err
