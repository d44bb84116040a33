"""The facts of vLLM's OpenAI protocol that our tier backend relies on, checked on the wire.

The served model is a tiny random Llama that can never emit its end-of-sequence token
(see tests/support/tiny_llama.py), so every generation runs to ``max_tokens`` unless a stop
string ends it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.vllm_server import VllmServer

pytestmark = pytest.mark.vllm

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def client(vllm_server: VllmServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vllm_server.base_url, timeout=60.0) as client:
        yield client


def chat(client: httpx.Client, model: str, **params: Any) -> dict[str, Any]:
    response = client.post("/chat/completions", json={"model": model, "messages": MESSAGES, **params})
    assert response.status_code == 200, response.text
    return response.json()


def stream_events(client: httpx.Client, path: str, body: dict[str, Any]) -> list[str]:
    """The `data:` payloads of a server-sent-event stream, in order."""
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line.removeprefix("data: ") for line in lines]


def stream_chat(client: httpx.Client, model: str, **params: Any) -> list[dict[str, Any]]:
    events = stream_events(client, "/chat/completions", {"model": model, "messages": MESSAGES, **params})
    assert events[-1] == "[DONE]"
    assert "[DONE]" not in events[:-1]
    return [json.loads(event) for event in events[:-1]]


def assert_logprobs(values: list[float]) -> None:
    assert values
    assert all(math.isfinite(v) and v <= 0.0 for v in values), values


def test_models_lists_the_served_model(client: httpx.Client, vllm_server: VllmServer) -> None:
    models = client.get("/models").json()
    assert [m["id"] for m in models["data"]] == [vllm_server.model]


def test_chat_completion(client: httpx.Client, vllm_server: VllmServer) -> None:
    body = chat(client, vllm_server.model, max_tokens=12)
    choice = body["choices"][0]
    assert body["object"] == "chat.completion"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["completion_tokens"] == 12
    assert choice["logprobs"] is None


def test_chat_completion_logprobs(client: httpx.Client, vllm_server: VllmServer) -> None:
    body = chat(client, vllm_server.model, max_tokens=10, logprobs=True)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"]
    assert_logprobs([token["logprob"] for token in content])
    assert "".join(token["token"] for token in content) == body["choices"][0]["message"]["content"]


def test_chat_streamed(client: httpx.Client, vllm_server: VllmServer) -> None:
    chunks = stream_chat(client, vllm_server.model, max_tokens=8)
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert reasons[-1] == "length"
    assert all(reason is None for reason in reasons[:-1])
    assert all(chunk.get("usage") is None for chunk in chunks)  # no usage unless asked for


def test_chat_streamed_logprobs_and_usage(client: httpx.Client, vllm_server: VllmServer) -> None:
    chunks = stream_chat(client, vllm_server.model, max_tokens=9, logprobs=True, stream_options={"include_usage": True})
    *content_chunks, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == 9
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    logprobs = [
        token["logprob"]
        for chunk in content_chunks
        for token in (chunk["choices"][0]["logprobs"] or {}).get("content") or []
    ]
    assert len(logprobs) == usage["completion_tokens"]
    assert_logprobs(logprobs)


@pytest.mark.parametrize("max_tokens", [1, 3, 20])
def test_max_tokens_is_respected(client: httpx.Client, vllm_server: VllmServer, max_tokens: int) -> None:
    body = chat(client, vllm_server.model, max_tokens=max_tokens, logprobs=True)
    completion_tokens = body["usage"]["completion_tokens"]
    assert completion_tokens <= max_tokens
    assert len(body["choices"][0]["logprobs"]["content"]) == completion_tokens
    if completion_tokens == max_tokens:
        assert body["choices"][0]["finish_reason"] == "length"


def test_stop_string_ends_with_stop(client: httpx.Client, vllm_server: VllmServer) -> None:
    full = chat(client, vllm_server.model, max_tokens=16, temperature=0.0)["choices"][0]["message"]["content"]
    stop = full[len(full) // 2 :][:3]
    cut = chat(client, vllm_server.model, max_tokens=16, temperature=0.0, stop=[stop])["choices"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["message"]["content"] == full[: full.index(stop)]  # the stop string is not included


def test_legacy_completion_logprobs(client: httpx.Client, vllm_server: VllmServer) -> None:
    body = {"model": vllm_server.model, "prompt": "The weather this morning", "max_tokens": 6, "logprobs": 1}
    response = client.post("/completions", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    choice = result["choices"][0]
    assert result["object"] == "text_completion"
    assert choice["finish_reason"] == "length"
    assert len(choice["logprobs"]["token_logprobs"]) == result["usage"]["completion_tokens"] == 6
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"]
    assert_logprobs(choice["logprobs"]["token_logprobs"])


def test_legacy_completion_streamed_logprobs(client: httpx.Client, vllm_server: VllmServer) -> None:
    body = {"model": vllm_server.model, "prompt": "The weather this morning", "max_tokens": 5, "logprobs": 0}
    events = stream_events(client, "/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    logprobs = [v for c in chunks for v in (c["choices"][0]["logprobs"] or {}).get("token_logprobs", [])]
    assert len(logprobs) == 5
    assert_logprobs(logprobs)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_request_past_the_context_is_rejected_with_400(client: httpx.Client, vllm_server: VllmServer) -> None:
    body = {"model": vllm_server.model, "messages": MESSAGES, "max_tokens": 100_000}
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


def test_unknown_model_is_404(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json={"model": "no-such-model", "messages": MESSAGES})
    assert response.status_code == 404, response.text
