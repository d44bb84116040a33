"""OpenAIBackend against a real OpenAI-compatible server process (the fake one)."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from services.core.errors import DeadlineExceeded, InvalidRequest, Overloaded, TierUnavailable
from services.tier.backends.base import Delta, Generation, Message
from services.tier.backends.openai import OpenAIBackend
from tests.support.openai_server import DEFAULT_TOKENS, FakeOpenAI, answer_tokens


@pytest.fixture
async def backend(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(base_url=fake_openai.base_url, model="fake-small", timeout_s=10)
    yield backend
    await backend.aclose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that is bound but never listens, so connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _generation(prompt: str = "What is 2+2?", **kwargs: object) -> Generation:
    fields: dict[str, object] = {"max_tokens": 64, **kwargs}
    return Generation(request_id="r1", messages=[Message(role="user", content=prompt)], **fields)  # type: ignore[arg-type]


async def _collect(backend: OpenAIBackend, generation: Generation) -> list[Delta]:
    return [delta async for delta in backend.stream(generation)]


async def test_streams_text_logprobs_and_usage(backend: OpenAIBackend) -> None:
    deltas = await _collect(backend, _generation("What is 2+2? [[confidence=0.3]]"))
    *pieces, final = deltas
    assert "".join(d.text for d in pieces) == "".join(answer_tokens("What is 2+2?"))
    assert len(pieces) == DEFAULT_TOKENS  # one delta per streamed token
    logprobs = [lp for d in pieces for lp in d.token_logprobs]
    assert len(logprobs) == final.output_tokens == DEFAULT_TOKENS
    assert logprobs == pytest.approx([math.log(0.3)] * DEFAULT_TOKENS)
    assert final.finish_reason == "stop" and final.text == ""
    assert final.input_tokens == 4 and not final.usage_estimated


async def test_no_logprobs_when_not_wanted(backend: OpenAIBackend) -> None:
    deltas = await _collect(backend, _generation(want_logprobs=False, temperature=0.0))
    assert all(d.token_logprobs == () for d in deltas)
    assert deltas[-1].output_tokens == DEFAULT_TOKENS


async def test_max_tokens_finishes_with_length(backend: OpenAIBackend) -> None:
    deltas = await _collect(backend, _generation(max_tokens=5))
    assert deltas[-1].finish_reason == "length" and deltas[-1].output_tokens == 5
    assert "".join(d.text for d in deltas) == "".join(answer_tokens("What is 2+2?")[:5])


async def test_stop_sequence(backend: OpenAIBackend) -> None:
    full = "".join(answer_tokens("What is 2+2?"))
    stop = full.split()[3]
    deltas = await _collect(backend, _generation(stop=(stop,)))
    assert "".join(d.text for d in deltas) == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"


async def test_missing_usage_is_estimated_from_logprobs(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(omit_usage=True, tokens=7)
    final = (await _collect(backend, _generation()))[-1]
    assert (final.output_tokens, final.usage_estimated) == (7, True)


async def test_server_down_is_tier_unavailable_quickly(closed_port: int) -> None:
    base_url = f"http://127.0.0.1:{closed_port}/v1"
    backend = OpenAIBackend(base_url=base_url, model="fake-small")
    # A refused connection is reported as such, not waited out until the deadline (DeadlineExceeded).
    with pytest.raises(TierUnavailable, match=f"127.0.0.1:{closed_port}"):
        await _collect(backend, _generation(timeout_s=30))
    await backend.aclose()


async def test_slow_first_token_is_deadline_exceeded(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(delay_first_token_s=5)
    with pytest.raises(DeadlineExceeded, match="did not finish within 0.5 s"):
        await _collect(backend, _generation(timeout_s=0.5))
    assert (await fake_openai.stats())["requests"] == 1


async def test_deadline_bounds_the_whole_stream_not_each_read(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(delay_per_token_s=0.1, tokens=50)  # every read is quick, the whole is 5 s
    received: list[Delta] = []
    with pytest.raises(DeadlineExceeded):
        async for delta in backend.stream(_generation(timeout_s=0.6)):
            received.append(delta)
    assert 0 < len(received) < 50  # cut mid-stream: a per-read timeout would have let all 50 through


async def test_no_time_left_fails_before_calling(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    with pytest.raises(DeadlineExceeded):
        await _collect(backend, _generation(timeout_s=0))
    assert (await fake_openai.stats())["requests"] == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TierUnavailable), (503, TierUnavailable), (429, Overloaded), (400, InvalidRequest), (422, InvalidRequest)],
)
async def test_http_errors_map_to_project_errors(
    backend: OpenAIBackend, fake_openai: FakeOpenAI, status: int, error: type[Exception]
) -> None:
    await fake_openai.control(status_code=status)
    with pytest.raises(error, match=f"HTTP {status}"):
        await _collect(backend, _generation())
    assert (await fake_openai.stats())["requests"] == 1  # the SDK never retries


async def test_bad_request_carries_the_server_message(backend: OpenAIBackend) -> None:
    with pytest.raises(InvalidRequest, match="temperature"):
        await _collect(backend, _generation(temperature=5.0))


async def test_dropped_stream_is_tier_unavailable(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(drop_after_tokens=3)
    received: list[Delta] = []
    with pytest.raises(TierUnavailable):
        async for delta in backend.stream(_generation()):
            received.append(delta)
    assert len(received) == 3


async def test_unknown_model_is_tier_unavailable(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(base_url=fake_openai.base_url, model="no-such-model")
    with pytest.raises(TierUnavailable, match="no-such-model.*404"):
        await _collect(backend, _generation())
    await backend.aclose()


async def test_concurrent_streams_share_one_client(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    prompts = [f"question {i}" for i in range(20)]
    answers = await asyncio.gather(*(_collect(backend, _generation(p)) for p in prompts))
    for prompt, deltas in zip(prompts, answers, strict=True):
        assert "".join(d.text for d in deltas) == "".join(answer_tokens(prompt))
    assert (await fake_openai.stats())["requests"] == 20


async def test_abandoned_stream_releases_its_connection(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(base_url=fake_openai.base_url, model="fake-small", max_connections=1)
    for _ in range(3):  # with one connection, a leaked stream would block the next call
        stream = backend.stream(_generation())
        assert (await anext(stream)).text
        await stream.aclose()  # type: ignore[attr-defined]
    assert (await _collect(backend, _generation(timeout_s=2)))[-1].finish_reason == "stop"
    await backend.aclose()


SCRIPTED = ["The answer is B", "It is C [[confidence=0.5]]", "Surely B [[confidence=0.2]]"]


async def test_n_samples_arrive_on_the_final_delta(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(answers=SCRIPTED)
    *pieces, final = await _collect(backend, _generation("pick [[confidence=0.3]]", n=3, temperature=0.7))
    assert "".join(d.text for d in pieces) == "The answer is B"  # only choice 0 streams
    assert all(not d.samples and d.finish_reason is None for d in pieces)
    assert [s.text for s in final.samples] == ["It is C", "Surely B"]
    assert [s.finish_reason for s in final.samples] == ["stop", "stop"]
    assert final.samples[0].token_logprobs == pytest.approx([math.log(0.5)] * 3)
    assert final.samples[1].token_logprobs == pytest.approx([math.log(0.2)] * 2)
    assert [lp for d in pieces for lp in d.token_logprobs] == pytest.approx([math.log(0.3)] * 4)
    assert (final.finish_reason, final.output_tokens, final.usage_estimated) == ("stop", 4 + 3 + 2, False)


async def test_final_delta_waits_for_every_choice(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    # Choice 0 finishes first; the longer samples must still arrive whole, cut at max_tokens.
    await fake_openai.control(answers=["B", " ".join(["word"] * 12), " ".join(["more"] * 30)])
    final = (await _collect(backend, _generation(n=3, max_tokens=20)))[-1]
    assert final.finish_reason == "stop"
    assert [s.text for s in final.samples] == [" ".join(["word"] * 12), " ".join(["more"] * 20)]
    assert [s.finish_reason for s in final.samples] == ["stop", "length"]
    assert final.output_tokens == 1 + 12 + 20


async def test_n_defaults_to_distinct_hashed_answers(backend: OpenAIBackend) -> None:
    final = (await _collect(backend, _generation("What is 2+2?", n=2)))[-1]
    assert [s.text for s in final.samples] == ["".join(answer_tokens("What is 2+2?", choice=1))]
    assert len(final.samples[0].token_logprobs) == DEFAULT_TOKENS


async def test_n_of_one_has_no_samples(backend: OpenAIBackend) -> None:
    assert (await _collect(backend, _generation(n=1)))[-1].samples == ()


async def test_missing_usage_with_n_counts_every_choice(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(omit_usage=True, answers=SCRIPTED)
    final = (await _collect(backend, _generation(n=3)))[-1]
    assert (final.output_tokens, final.usage_estimated) == (4 + 3 + 2, True)


async def test_dropped_stream_with_n_is_tier_unavailable(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(drop_after_tokens=5, answers=SCRIPTED)
    received: list[Delta] = []
    with pytest.raises(TierUnavailable):
        async for delta in backend.stream(_generation(n=3)):
            received.append(delta)
    # Tokens 0..4 interleave choices 0,1,2,0,1: choice 0 streamed two pieces, and no final delta came.
    assert [d.text for d in received] == ["The", " answer"]


async def test_deadline_bounds_a_call_with_n(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(delay_per_token_s=0.1, tokens=20)  # 3 x 20 tokens: 6 s in all
    with pytest.raises(DeadlineExceeded):
        await _collect(backend, _generation(n=3, timeout_s=0.6))


# ---- whole answers (Generation.whole: a unary caller, one response with "stream": false) ----------


async def test_a_whole_answer_is_one_final_delta_equal_to_the_streamed_one(backend: OpenAIBackend) -> None:
    prompt = "What is 2+2? [[confidence=0.3]]"
    *pieces, streamed = await _collect(backend, _generation(prompt))
    [whole] = await _collect(backend, _generation(prompt, whole=True))
    assert whole.text == "".join(d.text for d in pieces)
    assert whole.token_logprobs == pytest.approx([lp for d in pieces for lp in d.token_logprobs])
    assert (whole.finish_reason, whole.input_tokens, whole.output_tokens, whole.usage_estimated) == (
        streamed.finish_reason,
        streamed.input_tokens,
        streamed.output_tokens,
        False,
    )


async def test_a_whole_answer_is_asked_for_without_streaming(backend: OpenAIBackend) -> None:
    assert backend._body(_generation(), stream=False)["stream"] is False
    assert "stream_options" not in backend._body(_generation(), stream=False)


async def test_a_whole_answer_carries_its_samples(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(answers=SCRIPTED)
    [final] = await _collect(backend, _generation("pick [[confidence=0.3]]", n=3, temperature=0.7, whole=True))
    assert final.text == "The answer is B"
    assert [s.text for s in final.samples] == ["It is C", "Surely B"]
    assert final.samples[0].token_logprobs == pytest.approx([math.log(0.5)] * 3)
    assert (final.finish_reason, final.output_tokens) == ("stop", 4 + 3 + 2)


async def test_a_whole_answer_without_usage_is_estimated(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(omit_usage=True, tokens=7)
    [final] = await _collect(backend, _generation(whole=True))
    assert (final.output_tokens, final.usage_estimated) == (7, True)


async def test_a_whole_answer_maps_errors_and_deadlines(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(status_code=429)
    with pytest.raises(Overloaded):
        await _collect(backend, _generation(whole=True))
    await fake_openai.reset()
    await fake_openai.control(delay_first_token_s=2.0)
    with pytest.raises(DeadlineExceeded):
        await _collect(backend, _generation(whole=True, timeout_s=0.3))
