"""The fake OpenAI-compatible server speaks the protocol: raw HTTP checks of its shapes."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.openai_server import DEFAULT_TOKENS, MAX_N, FakeOpenAI, answer_tokens


@pytest.fixture
async def http(fake_openai: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake_openai.base_url, timeout=5) as client:
        yield client


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fake-small", "messages": [{"role": "user", "content": content}], **extra}


async def _events(response: httpx.Response) -> list[Any]:
    lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


async def test_models_and_health(http: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    models = (await http.get("/models")).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == list(fake_openai.models)
    assert "fake-small" in fake_openai.models
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{fake_openai.url}/health")).status_code == 200


async def test_chat_completion_is_deterministic_with_logprobs_and_usage(http: httpx.AsyncClient) -> None:
    body = _chat("What is 2+2? [[confidence=0.3]]", logprobs=True)
    first, second = (
        (await http.post("/chat/completions", json=body)).json(),
        (await http.post("/chat/completions", json=body)).json(),
    )
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    choice = first["choices"][0]
    assert first["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "".join(answer_tokens("What is 2+2?"))
    assert choice["finish_reason"] == "stop"
    content = choice["logprobs"]["content"]
    assert len(content) == DEFAULT_TOKENS == first["usage"]["completion_tokens"]
    assert {tuple(sorted(c)) for c in content} == {("bytes", "logprob", "token", "top_logprobs")}
    assert all(c["logprob"] == pytest.approx(math.log(0.3)) for c in content)
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + DEFAULT_TOKENS


async def test_default_confidence_and_no_logprobs_unless_asked(http: httpx.AsyncClient) -> None:
    choice = (await http.post("/chat/completions", json=_chat("hello", logprobs=True))).json()["choices"][0]
    assert all(c["logprob"] == pytest.approx(math.log(0.9)) for c in choice["logprobs"]["content"])
    assert (await http.post("/chat/completions", json=_chat("hello"))).json()["choices"][0]["logprobs"] is None


async def test_max_tokens_finishes_with_length(http: httpx.AsyncClient) -> None:
    answer = (await http.post("/chat/completions", json=_chat("hello", max_tokens=3))).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3
    assert len(answer["choices"][0]["message"]["content"].split()) == 3


async def test_stop_sequence_cuts_the_answer(http: httpx.AsyncClient) -> None:
    full = "".join(answer_tokens("hello"))
    stop = full.split()[4]
    answer = (await http.post("/chat/completions", json=_chat("hello", stop=[stop]))).json()["choices"][0]
    assert answer["message"]["content"] == full[: full.index(stop)]
    assert answer["finish_reason"] == "stop"


async def test_streamed_chat_sends_chunks_finish_usage_and_done(http: httpx.AsyncClient) -> None:
    body = _chat("stream me", stream=True, logprobs=True, max_tokens=4, stream_options={"include_usage": True})
    async with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await _events(response)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text_chunks = [e for e in events if e["choices"] and e["choices"][0]["delta"].get("content")]
    assert "".join(e["choices"][0]["delta"]["content"] for e in text_chunks) == "".join(answer_tokens("stream me")[:4])
    assert all(len(e["choices"][0]["logprobs"]["content"]) == 1 for e in text_chunks)
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 4


async def test_streamed_chat_without_include_usage_sends_no_usage(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/chat/completions", json=_chat("x", stream=True)) as response:
        events = await _events(response)
    assert all("usage" not in e or e["usage"] is None for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_completions_plain_and_streamed(http: httpx.AsyncClient) -> None:
    body = {"model": "fake-large", "prompt": "Once upon a time", "max_tokens": 5, "logprobs": 0}
    answer = (await http.post("/completions", json=body)).json()
    choice = answer["choices"][0]
    assert answer["object"] == "text_completion"
    assert choice["text"] == "".join(answer_tokens("Once upon a time")[:5])
    assert choice["logprobs"]["tokens"] == answer_tokens("Once upon a time")[:5]
    assert choice["logprobs"]["token_logprobs"] == pytest.approx([math.log(0.9)] * 5)
    assert (choice["finish_reason"], answer["usage"]["completion_tokens"]) == ("length", 5)
    async with http.stream("POST", "/completions", json={**body, "stream": True}) as response:
        events = await _events(response)
    assert "".join(e["choices"][0]["text"] for e in events) == choice["text"]
    assert events[-1]["choices"][0]["finish_reason"] == "length"


async def test_errors_have_openai_shape_and_status(http: httpx.AsyncClient) -> None:
    unknown = await http.post("/chat/completions", json={**_chat("x"), "model": "nope"})
    assert unknown.status_code == 404
    assert set(unknown.json()["error"]) >= {"message", "type", "code"}
    assert "nope" in unknown.json()["error"]["message"]
    invalid = await http.post("/chat/completions", json=_chat("x", max_tokens=0))
    assert invalid.status_code == 400 and "max_tokens" in invalid.json()["error"]["message"]
    assert (await http.post("/chat/completions", content=b"{not json")).status_code == 400
    assert (await http.post("/chat/completions", json=_chat("[[confidence=2]]"))).status_code == 400


async def test_injected_status_answers_every_request(http: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(status_code=503)
    response = await http.post("/chat/completions", json=_chat("x"))
    assert response.status_code == 503 and response.json()["error"]["code"] == 503
    assert (await http.get("/models")).status_code == 503
    await fake_openai.reset()
    assert (await http.post("/chat/completions", json=_chat("x"))).status_code == 200


async def test_injected_answer_length(http: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(tokens=40)
    assert (await http.post("/chat/completions", json=_chat("x"))).json()["usage"]["completion_tokens"] == 40


async def test_dropped_stream_closes_the_connection_mid_body(http: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(drop_after_tokens=2)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream("POST", "/chat/completions", json=_chat("x", stream=True)) as response:
            async for line in response.aiter_lines():
                received.extend([line] if line else [])
    assert len(received) == 3  # the role chunk and two tokens
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/chat/completions", json=_chat("x"))


async def test_delays_are_applied(http: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(delay_first_token_s=0.3)
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/chat/completions", json=_chat("x"), timeout=0.1)


async def test_stats_count_requests_and_reset_zeroes_them(http: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        await http.post("/chat/completions", json=_chat("x"))
    assert await fake_openai.stats() == {"requests": 3}
    await fake_openai.reset()
    assert await fake_openai.stats() == {"requests": 0}


async def test_control_rejects_unknown_faults(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        await fake_openai.control(explode=True)


async def test_n_choices_whole_each_with_its_own_answer_and_logprobs(http: httpx.AsyncClient) -> None:
    answer = (await http.post("/chat/completions", json=_chat("pick one", n=3, logprobs=True))).json()
    choices = answer["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    texts = [c["message"]["content"] for c in choices]
    assert texts == ["".join(answer_tokens("pick one", choice=i)) for i in range(3)]
    assert texts[0] == "".join(answer_tokens("pick one")) and len(set(texts)) == 3
    assert all(len(c["logprobs"]["content"]) == DEFAULT_TOKENS for c in choices)
    assert answer["usage"]["completion_tokens"] == 3 * DEFAULT_TOKENS


async def test_n_choices_stream_interleaved_with_scripted_answers(
    http: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    await fake_openai.control(answers=["The answer is B", "It is C [[confidence=0.5]]", "B"])
    body = _chat("pick", n=3, stream=True, logprobs=True, stream_options={"include_usage": True})
    async with http.stream("POST", "/chat/completions", json=body) as response:
        events = await _events(response)
    choices = [c for e in events for c in e["choices"]]
    assert all(len(e["choices"]) <= 1 for e in events)  # one choice per chunk, as vLLM sends them
    order = [c["index"] for c in choices if c["delta"].get("content")]
    assert order[:3] == [0, 1, 2] and order != sorted(order)  # interleaved, not one after another
    for index, text in enumerate(["The answer is B", "It is C", "B"]):
        mine = [c for c in choices if c["index"] == index]
        assert "".join(c["delta"].get("content", "") for c in mine) == text
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == ["stop"]
    logprobs = [lp["logprob"] for c in choices if c["index"] == 1 and c["logprobs"] for lp in c["logprobs"]["content"]]
    assert logprobs == pytest.approx([math.log(0.5)] * 3)
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 4 + 3 + 1


async def test_n_beyond_the_limit_is_rejected(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", json=_chat("x", n=MAX_N + 1))
    assert response.status_code == 400 and "n" in response.json()["error"]["message"]
