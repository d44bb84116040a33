"""The capacity benchmark's parts: its minimal upstream speaks the protocol the tier reads, its HTTP client
reads both response framings, its closed loop counts what it ran."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from bench import grpc_floor
from bench.load import HttpPool, closed_loop
from bench.upstream import Upstream, start_upstream, tokens
from services.core.nats import free_port
from services.tier.backends.base import Generation, Message
from services.tier.backends.openai import OpenAIBackend
from tests.support.openai_server import FakeOpenAI, answer_tokens


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = start_upstream(processes=2)
    yield server
    server.stop()


@pytest.fixture
async def pool(upstream: Upstream) -> AsyncIterator[HttpPool]:
    pool = HttpPool("127.0.0.1", upstream.port)
    yield pool
    await pool.aclose()


def _generation(max_tokens: int) -> Generation:
    return Generation(request_id="b1", messages=[Message(role="user", content="2+2?")], max_tokens=max_tokens)


async def test_the_tier_client_streams_max_tokens_with_logprobs_and_usage(upstream: Upstream) -> None:
    backend = OpenAIBackend(base_url=upstream.base_url, model="fake-model", timeout_s=10)
    try:
        for max_tokens in (3, 16):  # twice on one kept-alive connection
            deltas = [d async for d in backend.stream(_generation(max_tokens))]
            *text, final = deltas
            assert [d.text for d in text] == tokens(max_tokens)
            assert all(len(d.token_logprobs) == 1 and d.token_logprobs[0] < 0 for d in text)
            assert (final.finish_reason, final.output_tokens, final.usage_estimated) == ("length", max_tokens, False)
    finally:
        await backend.aclose()


async def test_the_tier_client_reads_a_whole_answer_from_it(upstream: Upstream) -> None:
    backend = OpenAIBackend(base_url=upstream.base_url, model="fake-model", timeout_s=10)
    try:
        [final] = [d async for d in backend.stream(dataclasses.replace(_generation(5), whole=True))]
    finally:
        await backend.aclose()
    assert final.text == "".join(tokens(5)) and len(final.token_logprobs) == 5
    assert (final.finish_reason, final.output_tokens, final.usage_estimated) == ("length", 5, False)


async def test_forked_servers_share_the_port_and_answer_each_request(upstream: Upstream, pool: HttpPool) -> None:
    assert len(upstream.pids()) == 2
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}

    async def call(i: int) -> None:
        status, answer = await pool.post("/v1/chat/completions", body)
        events = [line for line in answer.decode().split("\n\n") if line]
        assert status == 200 and events[-1] == "data: [DONE]" and len(events) == 2 + 2 + 1

    level = await closed_loop(call, concurrency=4, seconds=0, min_requests=40)
    assert len(level.latencies_ms) >= 40 and level.rps > 0
    status, _ = await pool.post("/v1/nowhere", {})
    assert status == 404


async def test_the_load_client_reads_a_chunked_stream_whole(fake_openai: FakeOpenAI) -> None:
    pool = HttpPool(fake_openai.host, fake_openai.port)  # uvicorn streams with chunked transfer encoding
    body = {"model": "fake-small", "messages": [{"role": "user", "content": "abc def"}], "stream": True}
    try:
        status, answer = await pool.post("/v1/chat/completions", body)
        status_again, whole = await pool.post("/v1/chat/completions", {**body, "stream": False})
    finally:
        await pool.aclose()
    lines = [line.removeprefix("data: ") for line in answer.decode().split("\n\n") if line]
    assert status == 200 and lines[-1] == "[DONE]"
    text = "".join(c["delta"].get("content", "") for line in lines[:-1] for c in json.loads(line)["choices"])
    assert text == "".join(answer_tokens("abc def"))
    assert status_again == 200 and json.loads(whole)["choices"][0]["message"]["content"] == text


async def test_the_grpc_floor_bench_answers_through_the_sdk_and_prints_its_table(capsys) -> None:
    port = free_port()
    server = asyncio.ensure_future(grpc_floor.serve(port))
    try:
        await grpc_floor.measure(port, 0.2, [1, 2])
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == [1, 2]
    assert all(float(r.split("|")[2]) > 0 for r in rows)  # requests/s


def test_the_capacity_table_subtracts_the_direct_call_and_the_grpc_floor(capsys) -> None:
    from bench.overhead import report_added

    pooled = {"direct": [1.0, 1.0, 1.0], "floor": [0.5, 0.5, 0.5], "grpc": [3.0, 3.0, 3.0], "http": [4.0, 4.0, 4.0]}
    report_added(pooled, rounds=1)
    rows = {
        r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
        for r in capsys.readouterr().out.splitlines()
        if r.startswith("| ") and not r.startswith("| path")
    }
    assert rows["grpc"][3:] == ["2.00", "2.00", "1.50"]  # added p50, added p99, beyond the floor's 0.5 ms
    assert rows["http"][3:] == ["3.00", "3.00", "2.50"]
    assert rows["floor"][3:] == ["", "", ""] and rows["direct"][3:] == ["", "", ""]
