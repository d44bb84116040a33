"""`cascade outcomes export`: recorded outcomes + feedback -> a routing-data file `cascade train fit` reads."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from cascade.v1 import common_pb2, events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes.stream import ensure_stream
from tests.support.data import MMLU_PRO

SMALL, LARGE = "Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-70B-Instruct"
ROUTING_COLUMNS = ["prompt_id", "dataset", "task", "subtask", "prompt", "model", "score", "response"]


def recorded_prompts(n: int) -> list[tuple[str, float, float]]:
    """(prompt, small score, large score) of the first n MMLU-Pro prompts."""
    table = pq.read_table(MMLU_PRO, columns=["prompt_id", "prompt", "model", "score"]).to_pandas()
    wide = table[table.model.isin([SMALL, LARGE])].pivot_table(index=["prompt_id", "prompt"], columns="model")
    wide = wide["score"].dropna().head(n)
    return [(prompt, row[SMALL], row[LARGE]) for (_, prompt), row in wide.iterrows()]


def outcome(i: int, prompt: str, small: float, large: float, *, store_prompt: bool) -> events_pb2.OutcomeEvent:
    now = Timestamp()
    now.GetCurrentTime()
    return events_pb2.OutcomeEvent(
        schema_version=1,
        request_id=f"req-{i}",
        time=now,
        tags={"task": "mmlu-pro", "subtask": "law"},
        prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        prompt_text=prompt if store_prompt else "",
        route=common_pb2.RouteSummary(tier="large", escalated=True),
        attempts=[
            events_pb2.TierAttempt(tier="small", model=SMALL, purpose="answer", replay_score=small),
            events_pb2.TierAttempt(tier="large", model=LARGE, purpose="escalation", replay_score=large),
        ],
    )


async def publish(url: str, events: list) -> None:
    nc = await connect_nats(url, name="t")
    try:
        js = nc.jetstream()
        await ensure_stream(js, OutcomeSettings())
        for subject, event in events:
            await js.publish(subject, event.SerializeToString())
    finally:
        await nc.drain()


def cascade(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "services.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.usefixtures("routing_data")
async def test_exported_traffic_is_routing_data_that_train_fit_accepts(nats_server, tmp_path):
    prompts = recorded_prompts(120)
    events = [(subjects.OUTCOMES, outcome(i, p, s, lg, store_prompt=i != 0)) for i, (p, s, lg) in enumerate(prompts)]
    # Feedback for the answered (large) tier loses to the replay ground truth; one for an unknown request.
    events += [(subjects.FEEDBACK, events_pb2.FeedbackEvent(request_id="req-1", score=0.0, time=events[1][1].time))]
    events += [(subjects.FEEDBACK, events_pb2.FeedbackEvent(request_id="nobody", score=1.0, time=events[1][1].time))]
    await publish(nats_server.url, events)
    out = tmp_path / "traffic.parquet"

    done = await asyncio.to_thread(cascade, "outcomes", "export", "--nats", nats_server.url, "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out).to_pandas()
    assert list(table.columns[: len(ROUTING_COLUMNS)]) == ROUTING_COLUMNS
    assert len(table) == 2 * (len(prompts) - 1)  # request 0 had no prompt text: both its rows skipped
    assert "exported 238 rows from 120 outcomes" in done.stderr and "skipped: 2 labelled rows" in done.stderr
    assert "1 for requests not among these outcomes" in done.stderr
    row = table[(table.request_id == "req-1") & (table.model == LARGE)].iloc[0]
    assert row.score == pytest.approx(prompts[1][2]) and row.label_source == "replay"
    assert row.prompt == prompts[1][0] and row.dataset == "traffic" and row.task == "mmlu-pro"

    model_dir = tmp_path / "model"
    args = ["train", "fit", "--data", str(out), "--small", SMALL, "--large", LARGE, "--out", str(model_dir)]
    fitted = await asyncio.to_thread(cascade, *args, "--quiet")
    assert fitted.returncode == 0, fitted.stderr
    assert (model_dir / "router.onnx").exists()


async def test_export_since_a_later_time_exports_nothing(nats_server, tmp_path):
    await publish(nats_server.url, [(subjects.OUTCOMES, outcome(0, "q", 1.0, 1.0, store_prompt=True))])
    out = tmp_path / "none.parquet"
    later = "2200-01-01T00:00:00"  # nanoseconds since 1970 overflow an int64 after 2262
    done = await asyncio.to_thread(
        cascade, "outcomes", "export", "--nats", nats_server.url, "--since", later, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows == 0 and "from 0 outcomes" in done.stderr
    bad = await asyncio.to_thread(cascade, "outcomes", "export", "--since", "yesterday", "--out", str(out))
    assert bad.returncode == 1 and "not an ISO 8601 time" in bad.stderr
