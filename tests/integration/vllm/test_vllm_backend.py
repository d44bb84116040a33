"""OpenAIBackend against a genuine vLLM server serving a tiny random Llama.

The model can never emit its end-of-sequence token (tests/support/tiny_llama.py), so a
generation ends with "length" at ``max_tokens`` unless a stop string ends it with "stop".
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

import pytest

from services.core.errors import InvalidRequest, TierUnavailable
from services.tier.backends.base import Delta, Generation, Message
from services.tier.backends.openai import OpenAIBackend
from tests.support.vllm_server import VllmServer

pytestmark = pytest.mark.vllm

MESSAGES = (
    Message(role="system", content="You are a helpful assistant."),
    Message(role="user", content="Explain the difference between a list and a tuple."),
)


@pytest.fixture
async def backend(vllm_server: VllmServer) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(base_url=vllm_server.base_url, model=vllm_server.model, timeout_s=60.0)
    try:
        yield backend
    finally:
        await backend.aclose()


def generation(**overrides: object) -> Generation:
    params: dict[str, object] = {"request_id": "r-1", "messages": MESSAGES, "max_tokens": 12}
    params.update(overrides)
    return Generation(**params)  # type: ignore[arg-type]


async def collect(backend: OpenAIBackend, gen: Generation) -> list[Delta]:
    return [delta async for delta in backend.stream(gen)]


def text_of(deltas: Sequence[Delta]) -> str:
    return "".join(delta.text for delta in deltas)


def logprobs_of(deltas: Sequence[Delta]) -> list[float]:
    return [value for delta in deltas for value in delta.token_logprobs]


async def test_stream_carries_text_logprobs_and_usage(backend: OpenAIBackend) -> None:
    deltas = await collect(backend, generation(max_tokens=16))
    *body, last = deltas
    assert text_of(deltas)
    assert all(delta.finish_reason is None for delta in body)
    assert last.finish_reason in ("stop", "length")
    assert last.input_tokens is not None and last.input_tokens > 0
    assert last.output_tokens is not None and 0 < last.output_tokens <= 16
    assert not last.usage_estimated
    logprobs = logprobs_of(deltas)
    assert len(logprobs) == last.output_tokens
    assert all(math.isfinite(v) and v <= 0.0 for v in logprobs)


async def test_small_max_tokens_finishes_with_length(backend: OpenAIBackend) -> None:
    deltas = await collect(backend, generation(max_tokens=3))
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].output_tokens == 3
    assert len(logprobs_of(deltas)) == 3


async def test_no_logprobs_unless_wanted(backend: OpenAIBackend) -> None:
    deltas = await collect(backend, generation(max_tokens=5, want_logprobs=False))
    assert text_of(deltas)
    assert logprobs_of(deltas) == []
    assert deltas[-1].output_tokens == 5


async def test_stop_string_finishes_with_stop(backend: OpenAIBackend) -> None:
    full = text_of(await collect(backend, generation(max_tokens=16, temperature=0.0)))
    stop = full[len(full) // 2 :][:3]
    deltas = await collect(backend, generation(max_tokens=16, temperature=0.0, stop=(stop,)))
    assert deltas[-1].finish_reason == "stop"
    assert text_of(deltas) == full[: full.index(stop)]


async def test_concurrent_streams(backend: OpenAIBackend) -> None:
    gens = [generation(request_id=f"r-{i}", max_tokens=4 + i) for i in range(4)]
    results = await asyncio.gather(*(collect(backend, gen) for gen in gens))
    assert [deltas[-1].output_tokens for deltas in results] == [4, 5, 6, 7]


async def test_request_past_the_context_raises_invalid_request(backend: OpenAIBackend) -> None:
    with pytest.raises(InvalidRequest):
        await collect(backend, generation(max_tokens=100_000))


async def test_unknown_model_raises_tier_unavailable(vllm_server: VllmServer) -> None:
    backend = OpenAIBackend(base_url=vllm_server.base_url, model="no-such-model")
    try:
        with pytest.raises(TierUnavailable, match="no-such-model"):
            await collect(backend, generation())
    finally:
        await backend.aclose()


async def test_n_samples_stream_one_answer_and_return_the_others(backend: OpenAIBackend) -> None:
    deltas = await collect(backend, generation(max_tokens=6, temperature=1.0, n=3))
    *body, last = deltas
    assert all(not delta.samples for delta in body)
    assert len(logprobs_of(deltas)) == 6  # only choice 0 streams
    assert len(last.samples) == 2
    for sample in last.samples:
        assert sample.finish_reason == "length"
        assert len(sample.token_logprobs) == 6
        assert all(math.isfinite(v) and v <= 0.0 for v in sample.token_logprobs)
    assert last.output_tokens == 3 * 6 and not last.usage_estimated  # vLLM's usage sums the choices
