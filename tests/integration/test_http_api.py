"""The OpenAI-compatible HTTP front door, driven by the official `openai` client.

Every hop is real: the openai client -> uvicorn on a free port -> gRPC gateway -> NATS -> router and
tier workers -> the fake OpenAI-compatible LLM server (or replay tiers). Failures are real ones too:
an empty prompt, an oversized prompt, no tier worker, no gateway, a slow LLM server.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from services.core import subjects
from services.core.nats import connect_nats, free_port
from services.core.settings import CascadeSettings, HttpSettings
from services.http import HttpService
from services.outcomes import read_events
from tests.support.system import System, make_settings, openai_tier, run_system

PROMPT = "Name a prime number."
KEY = "sk-test-key"


def tiers(base_url: str) -> dict[str, Any]:
    return {
        "small": openai_tier(base_url, input_per_mtok=0.2, output_per_mtok=0.2),
        "large": openai_tier(base_url, input_per_mtok=0.9, output_per_mtok=0.9),
        "judge": openai_tier(base_url),  # a third tier that no policy selects
    }


@asynccontextmanager
async def front_door(settings: CascadeSettings, **http: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    """The HTTP service on a free port, and an openai client for it (no retries: each status is seen)."""
    service = HttpService(settings=settings.model_copy(update={"http": HttpSettings(port=0, **http)}))
    await service.start()
    try:
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{service.port}/v1", api_key=KEY, max_retries=0, timeout=20
        )
        async with client:
            yield client
    finally:
        await service.stop()


@pytest.fixture
async def system(nats_server, fake_openai) -> AsyncIterator[System]:
    async with run_system(nats_server, make_settings(nats_server.url, tiers(fake_openai.base_url))) as system:
        yield system


@pytest.fixture
async def client(system: System) -> AsyncIterator[openai.AsyncOpenAI]:
    async with front_door(system.settings, gateway_target=system.target) as client:
        yield client


def chat(content: str = PROMPT) -> list[Any]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]


async def grpc_answer(system: System, **request: Any) -> cascade_pb2.GenerateResponse:
    async with aio.insecure_channel(system.target) as channel:
        return await cascade_pb2_grpc.CascadeStub(channel).Generate(cascade_pb2.GenerateRequest(**request), timeout=10)


async def outcome_events(system: System) -> dict[str, Any]:
    while system.gateway.outcomes.pending:  # the gateway publishes in the background
        await asyncio.sleep(0.02)
    nc = await connect_nats(system.nats_url, name="test-reader")
    try:
        stream = system.settings.outcomes.stream
        return {e.request_id: e async for e in read_events(nc.jetstream(), stream=stream, durable="test")}
    finally:
        await nc.drain()


# ---------------------------------------------------------------------------- answers


async def test_chat_completion_has_usage_route_and_headers(client, system):
    raw = await client.chat.completions.with_raw_response.create(
        model="cascade:large", messages=chat(), max_tokens=20, user="team-a"
    )
    completion = raw.parse()
    direct = await grpc_answer(
        system, messages=chat(), policy=cascade_pb2.POLICY_LARGE, max_tokens=20
    )  # same request over gRPC: the fake model is deterministic
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.message.content == direct.text
    assert choice.finish_reason in ("stop", "length")
    assert completion.object == "chat.completion" and completion.model == "cascade:large"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens == direct.usage.input_tokens > 0
    assert usage.completion_tokens == direct.usage.output_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    extra = completion.cascade  # the documented extra field
    assert extra["tier"] == "large" and extra["tiers_tried"] == ["large"] and extra["escalated"] is False
    confidence = direct.route.confidence if direct.route.HasField("confidence") else None
    assert extra["policy"] == "large" and extra["confidence"] == pytest.approx(confidence)
    assert extra["cost_usd"] == pytest.approx(usage.total_tokens * 0.9 / 1e6)
    assert completion.id == f"chatcmpl-{extra['request_id']}"
    headers = raw.headers
    assert headers["x-cascade-request-id"] == extra["request_id"] == raw.request_id
    assert headers["x-cascade-tier"] == "large" and headers["x-cascade-escalated"] == "false"
    assert float(headers["x-cascade-cost-usd"]) == pytest.approx(extra["cost_usd"])
    assert headers["x-cascade-policy"] == "large" and headers["x-cascade-tiers-tried"] == "large"


async def test_chat_stream_matches_the_whole_answer(client):
    whole = await client.chat.completions.create(model="cascade:small", messages=chat(), max_tokens=30)
    async with client.chat.completions.with_streaming_response.create(
        model="cascade:small",
        messages=chat(),
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-cascade-request-id"]
        assert response.headers["x-cascade-tier"] == "small"
        chunks = [chunk async for chunk in await response.parse()]
    *body, finish, usage_chunk = chunks
    assert body[0].choices[0].delta.role == "assistant"
    assert len(body) > 2 and all(c.choices[0].finish_reason is None for c in body)
    assert "".join(c.choices[0].delta.content or "" for c in body) == whole.choices[0].message.content
    assert {c.id for c in chunks} == {f"chatcmpl-{request_id}"} and chunks[0].object == "chat.completion.chunk"
    assert finish.choices[0].finish_reason == whole.choices[0].finish_reason
    assert finish.cascade["request_id"] == request_id and finish.cascade["tier"] == "small"
    assert usage_chunk.choices == [] and usage_chunk.usage == whole.usage


async def test_a_stream_without_include_usage_ends_with_the_route(client):
    stream = await client.chat.completions.create(model="cascade:large", messages=chat(), stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason and chunks[-1].cascade["tier"] == "large"
    assert all(c.usage is None for c in chunks)


async def test_completions_whole_and_streamed(client, system):
    whole = await client.completions.create(model="cascade", prompt=PROMPT, max_tokens=12)
    direct = await grpc_answer(system, prompt=PROMPT, max_tokens=12)
    assert whole.object == "text_completion" and whole.choices[0].text == direct.text
    assert whole.id == f"cmpl-{whole.cascade['request_id']}"
    assert whole.cascade["policy"] == direct.route.policy  # "cascade": the gateway's default policy
    assert whole.cascade["router_model_version"] == direct.route.router_model_version
    stream = await client.completions.create(model="cascade", prompt=[PROMPT], max_tokens=12, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks) == direct.text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


async def test_request_fields_reach_the_cascade(client, system):
    short = await client.chat.completions.create(model="cascade:large", messages=chat(), max_completion_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    full = (await client.completions.create(model="cascade:large", prompt=PROMPT)).choices[0].text
    second_word = full.split()[1]
    stopped = await client.completions.create(model="cascade:large", prompt=PROMPT, stop=second_word)
    cut = stopped.choices[0].text
    assert full.startswith(cut) and cut.split() == full.split()[:1]
    assert stopped.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError, match="temperature"):  # the gateway's own check
        await client.completions.create(model="cascade:large", prompt=PROMPT, temperature=2.5)
    answer = await client.completions.create(
        model="cascade:small", prompt=PROMPT, user="team-b", extra_body={"metadata": {"job": "j1"}, "made_up": [1]}
    )
    assert answer.cascade["tier"] == "small"  # fields the cascade does not know are ignored
    event = (await outcome_events(system))[answer.cascade["request_id"]]
    assert event.tenant == "team-b" and dict(event.tags) == {"api": "openai", "job": "j1"}


async def test_models_list_and_retrieve(client, system):
    models = await client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [
        "cascade",
        "cascade:route",
        "cascade:small",
        "cascade:large",
        "tier:small",
        "tier:large",
        "tier:judge",
    ]
    assert {m.owned_by for m in models.data} == {"prompt-cascade"}
    card = await client.models.retrieve("tier:large")
    assert card.id == "tier:large" and card.cascade == {"policy": "large", "tier": "large"}
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-4o")
    parts = [{"type": "text", "text": "Name a "}, {"type": "text", "text": "prime number."}]
    answer = await client.chat.completions.create(model="tier:small", messages=[{"role": "user", "content": parts}])
    assert (
        answer.choices[0].message.content
        == (await grpc_answer(system, prompt=PROMPT, policy=cascade_pb2.POLICY_SMALL)).text
    )
    assert answer.cascade["tier"] == "small" and answer.cascade["policy"] == "small"


# ---------------------------------------------------------------------------- errors


async def test_bad_input_is_400_with_openai_error_body(client, fake_openai):
    with pytest.raises(openai.BadRequestError) as err:
        await client.completions.create(model="cascade", prompt="   ")  # the gateway refuses it
    assert err.value.status_code == 400 and "empty" in err.value.message
    assert err.value.body["type"] == "invalid_request_error" and err.value.body["code"] == "invalid_argument"
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="cascade", messages=chat(), n=2)
    assert err.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="cascade", messages=[])
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError, match="only text"):
        await client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": [image]}])
    assert (await fake_openai.stats())["requests"] == 0  # refused before any tier was asked


async def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="gpt-4o", messages=chat())
    assert err.value.body == {
        "message": "The model `gpt-4o` does not exist; GET /v1/models lists the models served here.",
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",
    }
    with pytest.raises(openai.NotFoundError, match="cannot be asked directly"):
        await client.completions.create(model="tier:judge", prompt=PROMPT, stream=True)


async def test_oversized_prompt_is_429(client):
    with pytest.raises(openai.RateLimitError) as err:
        await client.completions.create(model="cascade", prompt="x" * 200_001)
    assert err.value.body["type"] == "rate_limit_error" and err.value.body["code"] == "resource_exhausted"


async def test_no_tier_worker_is_503_also_for_a_stream(nats_server, fake_openai):
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url))
    async with (
        run_system(nats_server, settings, run_tiers=()) as system,
        front_door(settings, gateway_target=system.target) as client,
    ):
        with pytest.raises(openai.InternalServerError) as err:
            await client.completions.create(model="cascade:large", prompt=PROMPT)
        assert err.value.status_code == 503 and "no worker" in err.value.message
        with pytest.raises(openai.InternalServerError) as err:
            await client.chat.completions.create(model="cascade:large", messages=chat(), stream=True)
        assert err.value.status_code == 503


async def test_no_gateway_is_503(system):
    async with front_door(system.settings, gateway_target=f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(openai.InternalServerError) as err:
            await client.chat.completions.create(model="cascade", messages=chat())
    assert err.value.status_code == 503 and err.value.body["code"] == "unavailable"


async def test_slow_llm_server_past_the_timeout_is_504(system, fake_openai):
    await fake_openai.control(delay_first_token_s=5)
    async with front_door(system.settings, gateway_target=system.target, request_timeout_s=0.5) as client:
        with pytest.raises(openai.InternalServerError) as err:
            await client.completions.create(model="cascade:large", prompt=PROMPT)
        assert err.value.status_code == 504 and err.value.body["type"] == "timeout_error"


async def test_api_keys(system):
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    async with front_door(system.settings, gateway_target=system.target, api_keys_sha256=(digest,)) as client:
        assert (await client.completions.create(model="cascade:small", prompt=PROMPT)).choices[0].text
        assert (await client.models.list()).data
        wrong = client.with_options(api_key="sk-wrong")
        with pytest.raises(openai.AuthenticationError) as err:
            await wrong.models.list()
        assert err.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model="cascade", messages=chat(), stream=True)
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=10) as http:
            for headers in ({}, {"authorization": f"Basic {KEY}"}, {"authorization": "Bearer"}):
                response = await http.post("chat/completions", json={"model": "cascade"}, headers=headers)
                assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
            assert (await http.get(str(client.base_url).removesuffix("/v1/") + "/health")).status_code == 200


async def test_tenant_tokens_pass_through_to_the_gateway(nats_server, fake_openai):
    # gateway.tenants is the one place of truth: the front door lets in the tenants' tokens and passes the
    # caller's on; the gateway decides the tenant (not the request's `user`) and its policies.
    tenants = {"team-h": {"tokens_sha256": [hashlib.sha256(KEY.encode()).hexdigest()], "policies": ["small"]}}
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url), gateway={"tenants": tenants})
    async with (
        run_system(nats_server, settings) as system,
        front_door(settings, gateway_target=system.target) as client,
    ):
        answer = await client.completions.create(model="cascade:small", prompt=PROMPT, user="claimed")
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.completions.create(model="cascade:large", prompt=PROMPT)
        assert "may not use policy 'large'" in denied.value.body["message"]
        with pytest.raises(openai.AuthenticationError):
            await client.with_options(api_key="sk-wrong").models.list()
        outcomes = await outcome_events(system)
    assert outcomes[answer.id.removeprefix("cmpl-")].tenant == "team-h"


async def test_a_stream_broken_mid_way_ends_with_an_error_event(client, fake_openai):
    await fake_openai.control(drop_after_tokens=3)
    stream = await client.chat.completions.create(model="cascade:large", messages=chat(), stream=True)
    received = []
    with pytest.raises(openai.APIError, match="cannot reach") as err:
        async for chunk in stream:
            received.append(chunk)
    assert err.value.body["code"] == "unavailable"
    assert received  # the headers and the first text had gone out: the error comes as an event


async def test_client_disconnect_cancels_the_grpc_call(client, system, fake_openai):
    await fake_openai.control(delay_per_token_s=0.3)
    nc = await connect_nats(system.nats_url, name="cancel-watch")
    cancelled = await nc.subscribe(subjects.CANCEL)
    asked = await nc.subscribe(subjects.tier_subject("large"))  # a copy of each TierRequest (no queue group)
    await nc.flush()  # the server has the subscription before anything is sent to it
    try:
        async with client.chat.completions.with_streaming_response.create(
            model="cascade:large", messages=chat(), stream=True
        ) as response:
            request_id = response.headers["x-cascade-request-id"]
            stream = await response.parse()
            await anext(aiter(stream))
        # The gateway saw the gRPC call cancelled and told the tier worker to stop generating.
        msg = await cancelled.next_msg(timeout=10)
        tier_request = events_pb2.TierRequest.FromString((await asked.next_msg(timeout=10)).data)
        assert tier_request.request_id == request_id
        assert msg.data.decode() == tier_request.chunk_subject  # the attempt, not the whole request
    finally:
        await nc.drain()


# ---------------------------------------------------------------------------- the wire, by hand


async def test_raw_sse_and_http_edges(system):
    async with front_door(system.settings, gateway_target=system.target) as client:
        base = str(client.base_url).rstrip("/")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            body = {"model": "cascade:small", "prompt": PROMPT, "stream": True, "max_tokens": 5}
            text = (await http.post("/completions", json=body)).text
            events = [line for line in text.split("\n\n") if line]
            assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
            bad = await http.post("/completions", content=b"{not json")
            assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
            missing = await http.get("/nothing-here")
            assert missing.status_code == 404 and missing.json()["error"]["message"]
            assert (await http.get(base.removesuffix("/v1") + "/health")).json() == {"status": "ok"}


async def test_a_body_over_max_body_bytes_is_413(system, fake_openai):
    async with front_door(system.settings, gateway_target=system.target, max_body_bytes=1024) as client:
        base = str(client.base_url).rstrip("/")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            body = {"model": "cascade:small", "prompt": "x" * 2000, "max_tokens": 5}
            whole = await http.post("/completions", json=body)

            async def chunked():  # no Content-Length: refused once 1024 bytes have arrived, unread beyond
                yield b'{"model": "cascade:small", "prompt": "'
                for _ in range(100):
                    yield b"x" * 100

            streamed = await http.post("/completions", content=chunked())
    for response in (whole, streamed):
        assert response.status_code == 413
        assert "over the limit of 1024 bytes (http.max_body_bytes)" in response.json()["error"]["message"]
    assert (await fake_openai.stats())["requests"] == 0


# ---------------------------------------------------------------------------- replay tiers: NOT_FOUND


async def test_a_prompt_unknown_to_a_replay_tier_is_404(nats_server, tmp_path):
    path = tmp_path / "replay.parquet"
    row = {"prompt_id": ["p"], "dataset": ["t"], "task": ["t"], "subtask": [None], "prompt": ["Known?"]}
    pq.write_table(
        pa.table({**row, "model": ["m"], "score": pa.array([1.0], pa.float32()), "response": ["Yes."]}), path
    )
    replay = {"backend": "replay", "replay": {"data": path, "model": "m"}}
    settings = make_settings(nats_server.url, {"small": replay, "large": replay})
    async with (
        run_system(nats_server, settings) as system,
        front_door(settings, gateway_target=system.target) as client,
    ):
        assert (await client.completions.create(model="cascade:large", prompt="Known?")).choices[0].text == "Yes."
        with pytest.raises(openai.NotFoundError) as err:
            await client.completions.create(model="cascade:large", prompt="Never recorded")
        assert err.value.body["code"] == "not_found"


async def test_mutual_tls_to_the_gateway_with_its_own_files(nats_server, fake_openai, self_signed):
    key, cert = self_signed
    gateway = {"tls_cert": cert, "tls_key": key, "tls_client_ca": cert}  # requires client certificates
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url), gateway=gateway)
    async with run_system(nats_server, settings) as system:
        async with front_door(settings, gateway_target=system.target) as client:
            answer = await client.completions.create(model="cascade:large", prompt=PROMPT)
            assert answer.choices[0].text and answer.cascade["tier"] == "large"
        plain = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"tls_cert": None})})
        async with front_door(plain, gateway_target=system.target) as client:
            with pytest.raises(openai.InternalServerError) as err:  # plaintext to a TLS gateway
                await client.completions.create(model="cascade:large", prompt=PROMPT)
            assert err.value.status_code == 503


async def test_a_client_that_gives_up_before_the_answer_cancels_the_grpc_call(client, system, fake_openai):
    await fake_openai.control(delay_first_token_s=5)
    nc = await connect_nats(system.nats_url, name="cancel-watch")
    cancelled = await nc.subscribe(subjects.CANCEL)
    await nc.flush()  # the server has the subscription before anything is sent to it
    try:
        impatient = client.with_options(timeout=0.5)
        with pytest.raises(openai.APITimeoutError):
            await impatient.completions.create(model="cascade:large", prompt=PROMPT)
        with pytest.raises(openai.APITimeoutError):  # a held stream that has not sent its first text yet
            await impatient.completions.create(model="cascade:large", prompt=PROMPT, stream=True)
        assert len({(await cancelled.next_msg(timeout=10)).data for _ in range(2)}) == 2
    finally:
        await nc.drain()
