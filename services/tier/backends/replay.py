"""A tier backend that answers from recorded benchmark outcomes (shared/data/routing).

It replays the real answers of real models, so the whole cascade runs and is measured on a
machine without GPUs. It never pretends to be a model: its kind is ``replay`` and every final
delta carries ``extra={"replay": "true"}`` and the recorded score.

A replay tier cannot sample: a generation that asks for ``n > 1`` answers gets the one recorded
answer and no ``samples``, so agreement over samples never sees invented answers.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from services.core.errors import ConfigError, DeadlineExceeded, InvalidRequest, NotFound
from services.tier.backends.base import Delta, Generation, Message

_CHARS_PER_TOKEN = 4
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class _Record:
    score: float
    response: str | None


class ReplayBackend:
    """Streams the recorded answer of ``model`` to a prompt found in ``data_path``."""

    kind = "replay"

    def __init__(self, *, data_path: Path, model: str, chunk_words: int = 4) -> None:
        if chunk_words < 1:
            raise ConfigError(f"chunk_words must be >= 1, got {chunk_words}")
        self.model = model
        self.data_path = Path(data_path)
        self.chunk_words = chunk_words
        self._records = _load(self.data_path, model)

    def prompts(self) -> list[str]:
        """The prompt texts this backend can answer (stripped, each once)."""
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    async def stream(self, generation: Generation) -> AsyncIterator[Delta]:
        if generation.timeout_s is not None and generation.timeout_s <= 0:
            raise DeadlineExceeded(f"no time left for replay of {self.model}")
        prompt = _last_user_text(generation.messages)
        record = self._records.get(prompt)
        if record is None:
            raise NotFound(f"replay tier {self.model!r} has no recorded answer for the prompt {_preview(prompt)}")
        answer = record.response if record.response is not None else self._placeholder(record)
        text, finish_reason = _truncate(answer, generation.max_tokens, generation.stop)
        for piece in _pieces(text, self.chunk_words):
            yield Delta(text=piece)
            await asyncio.sleep(0)  # a long answer must not starve the event loop
        yield Delta(
            finish_reason=finish_reason,
            input_tokens=_estimate_tokens(sum(len(m.content) for m in generation.messages)),
            output_tokens=_estimate_tokens(len(text)),
            usage_estimated=True,
            replay_score=record.score,
            extra={"replay": "true"},
        )

    async def aclose(self) -> None:
        return None

    def _placeholder(self, record: _Record) -> str:
        return f"[replay: no answer text recorded for {self.model}; recorded score {record.score:.2f}]"


def _preview(prompt: str, chars: int = 60) -> str:
    """The prompt quoted whole when short; else its start, marked as cut, and its length."""
    if len(prompt) <= chars:
        return repr(prompt)
    return f"{prompt[:chars]!r}... ({len(prompt)} chars)"


def _load(path: Path, model: str) -> dict[str, _Record]:
    """Rows of ``model`` keyed by stripped prompt; duplicates get the mean score and first response."""
    sums: dict[str, list[float]] = {}
    first_response: dict[str, str | None] = {}
    for batch in _batches(path, model):
        prompts = pc.utf8_trim_whitespace(batch["prompt"]).to_pylist()
        rows = zip(prompts, batch["score"].to_pylist(), batch["response"].to_pylist(), strict=True)
        for prompt, score, response in rows:
            if prompt is None:
                continue
            total = sums.setdefault(prompt, [0.0, 0.0])
            if score is not None:
                total[0] += score
                total[1] += 1
            if first_response.get(prompt) is None:
                first_response[prompt] = response
    # The decoded column chunks are garbage now; hand their pages back to the OS.
    pa.default_memory_pool().release_unused()
    if not sums:
        available = ", ".join(_models_in(path)) or "none"
        raise ConfigError(f"model {model!r} is not in {path}; available: {available}")
    return {
        prompt: _Record(score=(s / n if n else math.nan), response=first_response[prompt])
        for prompt, (s, n) in sums.items()
    }


def _batches(path: Path, model: str) -> Iterator[pa.RecordBatch]:
    # Single-threaded keeps file order, so "first response" is the first in the file.
    try:
        dataset = ds.dataset(path, format="parquet")
        yield from dataset.to_batches(
            columns=["prompt", "score", "response"],
            filter=ds.field("model") == model,
            use_threads=False,
        )
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"cannot read replay data {path}: {exc}") from exc


def _models_in(path: Path) -> list[str]:
    models = ds.dataset(path, format="parquet").to_table(columns=["model"])["model"]
    return sorted(str(m) for m in pc.unique(models).to_pylist() if m is not None)


def _last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content.strip()
    raise InvalidRequest("a replay tier needs a message with role 'user'")


def _truncate(answer: str, max_tokens: int, stop: Sequence[str]) -> tuple[str, str]:
    """The answer cut at the first stop string or at ``max_tokens`` estimated tokens."""
    cut = min((i for i in (answer.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut >= 0:
        answer = answer[:cut]
    limit = max(max_tokens, 0) * _CHARS_PER_TOKEN
    if len(answer) > limit:
        return answer[:limit], "length"
    return answer, "stop"


def _pieces(text: str, words: int) -> Iterator[str]:
    """``text`` in pieces of ``words`` words each; the pieces concatenate to ``text`` exactly."""
    lead = len(text) - len(text.lstrip())
    matches = _WORD.findall(text, lead)
    for start in range(0, len(matches), words):
        piece = "".join(matches[start : start + words])
        yield text[:lead] + piece if start == 0 else piece
    if not matches and text:
        yield text


def _estimate_tokens(chars: int) -> int:
    return math.ceil(chars / _CHARS_PER_TOKEN)
