"""The replay backend answers from recorded benchmark outcomes, labelled as replay."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.core.errors import ConfigError, DeadlineExceeded, InvalidRequest, NotFound
from services.tier.backends.base import Delta, Generation, Message
from services.tier.backends.replay import ReplayBackend
from tests.support.data import MMLU_PRO

ANSWER = "  Let's think step by step.\nThe  capital of France is Paris.\n\nThe answer is (B).  "


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    schema = pa.schema(
        [
            ("prompt_id", pa.string()),
            ("dataset", pa.string()),
            ("task", pa.string()),
            ("subtask", pa.string()),
            ("prompt", pa.large_string()),
            ("model", pa.string()),
            ("score", pa.float32()),
            ("response", pa.large_string()),
        ]
    )
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def _row(prompt: str, model: str, score: float, response: str | None) -> dict[str, object]:
    return {
        "prompt_id": "p",
        "dataset": "d",
        "task": "t",
        "prompt": prompt,
        "model": model,
        "score": score,
        "response": response,
    }


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "outcomes.parquet",
        [
            _row("What is the capital of France?", "small", 1.0, ANSWER),
            _row("What is the capital of France?", "large", 1.0, "Paris."),
            _row("  Duplicated prompt\n", "small", 1.0, None),
            _row("Duplicated prompt", "small", 0.0, "first recorded text"),
            _row("Duplicated prompt", "small", 0.5, "second recorded text"),
            _row("No text here", "small", 1.0, None),
        ],
    )


def _generation(prompt: str, *, max_tokens: int = 1000, stop: tuple[str, ...] = ()) -> Generation:
    messages = [Message(role="system", content="Be brief."), Message(role="user", content=prompt)]
    return Generation(request_id="r1", messages=messages, max_tokens=max_tokens, stop=stop)


async def _collect(backend: ReplayBackend, generation: Generation) -> list[Delta]:
    return [delta async for delta in backend.stream(generation)]


async def test_streams_the_recorded_answer_exactly_in_word_chunks(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small", chunk_words=3)
    deltas = await _collect(backend, _generation("What is the capital of France?"))
    *pieces, final = deltas
    assert "".join(d.text for d in pieces) == ANSWER
    assert len(pieces) == math.ceil(len(ANSWER.split()) / 3)
    assert all(len(p.text.split()) <= 3 for p in pieces)
    assert all(p.finish_reason is None for p in pieces)
    assert (final.text, final.finish_reason, final.replay_score) == ("", "stop", 1.0)
    assert final.extra == {"replay": "true"}
    assert final.usage_estimated
    prompt_chars = len("Be brief.") + len("What is the capital of France?")
    assert (final.input_tokens, final.output_tokens) == (math.ceil(prompt_chars / 4), math.ceil(len(ANSWER) / 4))


async def test_answers_only_for_its_own_model(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="large")
    deltas = await _collect(backend, _generation("What is the capital of France?"))
    assert "".join(d.text for d in deltas) == "Paris."
    assert backend.kind == "replay" and backend.model == "large"
    assert backend.prompts() == ["What is the capital of France?"] and len(backend) == 1


async def test_duplicate_prompts_average_the_score_and_keep_the_first_text(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small")
    deltas = await _collect(backend, _generation("\n Duplicated prompt  "))
    assert "".join(d.text for d in deltas) == "first recorded text"
    assert deltas[-1].replay_score == pytest.approx(0.5)
    assert sorted(backend.prompts()) == ["Duplicated prompt", "No text here", "What is the capital of France?"]


async def test_missing_text_gets_a_labelled_placeholder(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small")
    deltas = await _collect(backend, _generation("No text here"))
    text = "".join(d.text for d in deltas)
    assert text == "[replay: no answer text recorded for small; recorded score 1.00]"
    assert deltas[-1].extra == {"replay": "true"}


async def test_max_tokens_cuts_the_answer_and_finishes_with_length(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small")
    deltas = await _collect(backend, _generation("What is the capital of France?", max_tokens=5))
    assert "".join(d.text for d in deltas) == ANSWER[:20]
    assert (deltas[-1].finish_reason, deltas[-1].output_tokens) == ("length", 5)


async def test_stop_sequence_cuts_before_it(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small")
    deltas = await _collect(backend, _generation("What is the capital of France?", stop=("Paris", "zzz")))
    assert "".join(d.text for d in deltas) == ANSWER[: ANSWER.index("Paris")]
    assert deltas[-1].finish_reason == "stop"


async def test_unknown_prompt_is_not_found_without_echoing_it(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small")
    prompt = "An unknown question " + "x" * 500
    with pytest.raises(NotFound) as caught:
        await _collect(backend, _generation(prompt))
    assert prompt[:60] in caught.value.message
    assert f"{len(prompt)} chars" in caught.value.message
    assert "x" * 100 not in caught.value.message


async def test_a_short_unknown_prompt_is_quoted_whole_without_an_ellipsis(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="small")
    with pytest.raises(NotFound) as caught:
        await _collect(backend, _generation("Is this known?"))
    assert caught.value.message.endswith("for the prompt 'Is this known?'")


async def test_the_last_user_message_is_the_key(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="large")
    messages = [
        Message(role="user", content="an earlier turn"),
        Message(role="assistant", content="..."),
        Message(role="user", content="What is the capital of France?"),
    ]
    deltas = await _collect(backend, Generation(request_id="r", messages=messages, max_tokens=50))
    assert "".join(d.text for d in deltas) == "Paris."
    with pytest.raises(InvalidRequest):
        await _collect(
            backend, Generation(request_id="r", messages=[Message(role="system", content="x")], max_tokens=5)
        )


async def test_no_time_left_is_deadline_exceeded(data: Path) -> None:
    backend = ReplayBackend(data_path=data, model="large")
    generation = Generation(
        request_id="r",
        messages=[Message(role="user", content="What is the capital of France?")],
        max_tokens=5,
        timeout_s=0,
    )
    with pytest.raises(DeadlineExceeded):
        await _collect(backend, generation)


def test_unknown_model_lists_the_available_ones(data: Path) -> None:
    with pytest.raises(ConfigError, match=r"'medium'.*available: large, small"):
        ReplayBackend(data_path=data, model="medium")


def test_unreadable_data_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read replay data"):
        ReplayBackend(data_path=tmp_path / "missing.parquet", model="small")


@pytest.mark.usefixtures("routing_data")
async def test_real_mmlu_pro_answer_of_mistral() -> None:
    backend = ReplayBackend(data_path=MMLU_PRO, model="Mistral-7B-Instruct-v0.2")
    assert len(backend) > 10_000
    rows = pq.read_table(
        MMLU_PRO, columns=["prompt", "score", "response"], filters=[("model", "==", "Mistral-7B-Instruct-v0.2")]
    ).to_pylist()
    counts = Counter(r["prompt"].strip() for r in rows)
    row = next(r for r in rows if counts[r["prompt"].strip()] == 1)
    deltas = await _collect(backend, _generation(row["prompt"], max_tokens=100_000))
    assert "".join(d.text for d in deltas) == row["response"]
    assert deltas[-1].replay_score == pytest.approx(row["score"])
    assert deltas[-1].extra == {"replay": "true"} and deltas[-1].finish_reason == "stop"


async def test_n_samples_get_the_one_recorded_answer_and_no_samples(data: Path) -> None:
    # A replay tier cannot sample: asked for n answers, it gives the recorded one, once.
    backend = ReplayBackend(data_path=data, model="small")
    one = await _collect(backend, _generation("What is the capital of France?"))
    generation = dataclasses.replace(_generation("What is the capital of France?"), n=5)
    many = await _collect(backend, generation)
    assert many == one
    assert many[-1].samples == () and many[-1].output_tokens == math.ceil(len(ANSWER) / 4)
