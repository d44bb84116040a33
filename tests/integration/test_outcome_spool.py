"""No outcome event is lost: NATS outages, a missing stream, SIGKILL and SIGTERM, on a real nats-server.

Gateways run in-process (run_system) or as real ``python -m services.gateway`` processes where a
signal is the point. Events are read back with the durable reader and counted by request id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from services.core import subjects
from services.core.nats import NatsServer, connect_nats, free_port
from services.core.settings import CascadeSettings
from services.gateway.server import GatewayService
from services.outcomes import read_events
from services.outcomes.spool import SUFFIX, SpooledEvent, read_journal
from tests.support.scripted_tier import ScriptedTier
from tests.support.system import make_settings, openai_tier, run_system


def spool_files(directory: Path) -> list[Path]:
    """The journal's segment files: outcomes, and the request-id records behind Feedback's NOT_FOUND."""
    return sorted(directory.glob(f"*{SUFFIX}"))


def spooled(directory: Path) -> list[SpooledEvent]:
    """The outcome events the next gateway on the directory would publish (read as it would read them)."""
    return [e for e in read_journal(directory).events if e.subject == subjects.OUTCOMES]


async def eventually(check, what: str, tries: int = 300) -> None:  # type: ignore[no-untyped-def]
    """Poll ``check()`` until true (a bound on waiting, not a timing assertion)."""
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def stored_request_ids(nats_url: str, stream: str) -> Counter[str]:
    nc = await connect_nats(nats_url, name="test-reader")
    try:
        return Counter([e.request_id async for e in read_events(nc.jetstream(), stream=stream, durable=None)])
    finally:
        await nc.drain()


async def generate_fails(target: str, request_id: str) -> grpc.aio.AioRpcError:
    async with aio.insecure_channel(target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is 2 + 2?", request_id=request_id), timeout=30)
    return info.value


@pytest.fixture
async def system(nats_server, fake_openai):
    tiers = {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)}
    async with run_system(nats_server, make_settings(nats_server.url, tiers)) as system:
        yield system


async def test_outcomes_of_an_outage_are_stored_once_nats_returns(system, nats_server):
    nc = system.gateway._nc
    await nats_server.stop()
    await eventually(lambda: not nc.is_connected, "the gateway noticed NATS is gone")
    ids = [f"outage-{i}" for i in range(5)]
    for request_id in ids:
        err = await generate_fails(system.target, request_id)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "NATS connection lost" in (err.details() or "")
    spool_dir = system.settings.outcomes.spool_dir
    await eventually(lambda: len(spooled(spool_dir)) == len(ids), "every outcome is on disk, not only in memory")

    await nats_server.start()
    await eventually(lambda: system.gateway.outcomes.pending == 0, "the spool drained")
    await system.gateway.outcomes.spool.flush()
    assert read_journal(spool_dir).events == []  # every one marked done
    stored = await stored_request_ids(system.nats_url, system.settings.outcomes.stream)
    assert stored == Counter(ids)  # each exactly once


async def test_an_answer_is_sent_only_once_its_outcome_is_written(system, nats_server, monkeypatch):
    """Answered means recorded, not waiting for JetStream: with NATS away (the publisher only looks at the
    spool every 0.1 s) and the end-of-turn write switched off, only the gateway's own write before it
    answers puts the outcome on disk by the time the caller has the answer."""
    spool = system.gateway.outcomes.spool
    monkeypatch.setattr(spool, "_write_soon", lambda: None)
    await nats_server.stop()
    await eventually(lambda: not system.gateway._nc.is_connected, "the gateway noticed NATS is gone")
    for i in range(5):
        err = await generate_fails(system.target, f"written-{i}")
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert f"outcome:written-{i}" in [e.msg_id for e in spooled(spool.directory)]


async def test_beyond_the_spool_bound_new_outcomes_are_dropped_and_the_spooled_ones_kept(nats_server, fake_openai):
    tiers = {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)}
    # Room for about two failed-request outcomes (a few hundred bytes each).
    settings = make_settings(nats_server.url, tiers, outcomes={"spool_max_bytes": 1200})
    async with run_system(nats_server, settings) as system:
        nc = system.gateway._nc
        await nats_server.stop()
        await eventually(lambda: not nc.is_connected, "the gateway noticed NATS is gone")
        ids = [f"bound-{i}" for i in range(6)]
        for request_id in ids:  # a full spool never blocks or fails a request for another reason
            assert (await generate_fails(system.target, request_id)).code() == grpc.StatusCode.UNAVAILABLE
        spool = system.gateway.outcomes.spool
        await spool.flush()
        kept = len(spooled(spool.directory))
        # Each request submits two events: its request-id record (at the start) and its outcome.
        assert 0 < kept < len(ids) and spool.dropped == 2 * len(ids) - spool.pending
        await nats_server.start()
        await eventually(lambda: system.gateway.outcomes.pending == 0, "the spool drained")
        stored = await stored_request_ids(system.nats_url, settings.outcomes.stream)
    assert stored == Counter(ids[:kept])  # the oldest are kept, the newest dropped


async def test_a_stream_deleted_under_the_gateway_is_created_again_and_nothing_is_lost(system):
    nc = await connect_nats(system.nats_url, name="test-admin")
    try:
        await nc.jetstream().delete_stream(system.settings.outcomes.stream)
    finally:
        await nc.drain()
    ids = [f"gone-{i}" for i in range(3)]
    async with aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        for request_id in ids:  # requests still succeed: only JetStream storage is missing
            prompt = cascade_pb2.GenerateRequest(prompt="Hi", request_id=request_id, policy=cascade_pb2.POLICY_SMALL)
            assert (await stub.Generate(prompt, timeout=10)).text
    await eventually(lambda: system.gateway.outcomes.pending == 0, "the spool drained")
    assert await stored_request_ids(system.nats_url, system.settings.outcomes.stream) == Counter(ids)


async def test_feedback_that_cannot_be_stored_is_unavailable_and_names_the_cause(system, nats_server):
    async with aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        prompt = cascade_pb2.GenerateRequest(prompt="Hi", request_id="fb-1", policy=cascade_pb2.POLICY_SMALL)
        await stub.Generate(prompt, timeout=10)
        feedback = cascade_pb2.FeedbackRequest(request_id="fb-1", score=1.0)

        admin = await connect_nats(system.nats_url, name="test-admin")
        try:
            await admin.jetstream().delete_stream(system.settings.outcomes.stream)
        finally:
            await admin.drain()
        with pytest.raises(grpc.aio.AioRpcError) as no_stream:
            await stub.Feedback(feedback, timeout=10)
        assert no_stream.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no stream is listening on cascade.outcomes.feedback" in (no_stream.value.details() or "")

        nc = system.gateway._nc
        await nats_server.stop()
        try:
            await eventually(lambda: not nc.is_connected, "the gateway noticed NATS is gone")
            with pytest.raises(grpc.aio.AioRpcError) as no_nats:
                await stub.Feedback(feedback, timeout=10)
        finally:
            await nats_server.start()  # the system's services drain their connections on the way out
        assert no_nats.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "NATS connection lost" in (no_nats.value.details() or "")


# ---------------------------------------------------------------------------- gateway processes


@asynccontextmanager
async def gateway_process(
    tmp_path: Path, nats_url: str, spool_dir: Path, **outcomes: Any
) -> AsyncIterator[subprocess.Popen[bytes]]:
    port = free_port()
    config = tmp_path / f"gateway-{port}.yaml"
    tier = openai_tier("http://127.0.0.1:9/v1")  # never called: no tier worker runs
    config.write_text(
        yaml.safe_dump(
            {
                "nats": {"url": nats_url},
                "gateway": {"port": port},
                "escalation": {"confidence": "logprob"},
                "tiers": {"small": tier, "large": tier},
                "outcomes": {"spool_dir": str(spool_dir), **outcomes},
            }
        )
    )
    log_path = tmp_path / f"gateway-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.gateway", "--config", str(config)], stdout=log, stderr=log
        )
    proc.target = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    proc.log_path = log_path  # type: ignore[attr-defined]
    try:
        await eventually(lambda: "gateway ready" in log_path.read_text() or proc.poll() is not None, "ready", 600)
        assert proc.poll() is None, log_path.read_text()[-3000:]
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait)


async def fail_requests_during_an_outage(nats: NatsServer, proc, ids: list[str], spool_dir: Path) -> None:  # type: ignore[no-untyped-def]
    await nats.stop()
    for request_id in ids:
        err = await generate_fails(proc.target, request_id)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    await eventually(lambda: len(spooled(spool_dir)) == len(ids), "every outcome is in the spool")


async def next_gateway_drains(nats_url: str, spool_dir: Path) -> CascadeSettings:
    """A new gateway on the spool publishes what the killed one left; its settings."""
    settings = CascadeSettings(
        nats={"url": nats_url},
        gateway={"port": 0},
        escalation={"confidence": "logprob"},
        outcomes={"spool_dir": str(spool_dir)},
    )
    nc = await connect_nats(nats_url, name="gateway-2")
    gateway = GatewayService(nc=nc, settings=settings)
    try:
        await gateway.start()
        await eventually(lambda: gateway.outcomes.pending == 0, "the next gateway drained the spool")
    finally:
        await gateway.stop()
        await nc.drain()
    return settings


async def test_a_killed_gateways_spooled_events_are_published_by_the_next_one(tmp_path, nats_server):
    spool_dir = tmp_path / "spool"
    ids = [f"killed-{i}" for i in range(4)]
    async with gateway_process(tmp_path, nats_server.url, spool_dir) as proc:
        await fail_requests_during_an_outage(nats_server, proc, ids, spool_dir)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
    events = spooled(spool_dir)
    assert len(events) == len(ids)

    await nats_server.start()
    # As if the killed gateway had got JetStream's ack for the first event but died before deleting its file:
    # the next gateway republishes it, and its message id keeps it from being stored twice.
    already = events[0]
    admin = await connect_nats(nats_server.url, name="test-admin")
    try:
        await admin.jetstream().publish(already.subject, already.payload, headers={"Nats-Msg-Id": already.msg_id})
    finally:
        await admin.drain()
    settings = await next_gateway_drains(nats_server.url, spool_dir)
    assert spool_files(spool_dir) == []
    assert await stored_request_ids(nats_server.url, settings.outcomes.stream) == Counter(ids)


async def test_a_gateway_killed_right_after_it_answered_loses_no_outcome(tmp_path, nats_server):
    """The caller hears how its request ended only once the outcome is in the journal: a SIGKILL the
    moment the caller has it leaves the outcome for the next gateway (bench.chaos lost some)."""
    spool_dir = tmp_path / "spool"
    async with gateway_process(tmp_path, nats_server.url, spool_dir) as proc:
        await nats_server.stop()
        err = await generate_fails(proc.target, "answered-then-killed")
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
    assert [e.msg_id for e in spooled(spool_dir)] == ["outcome:answered-then-killed"]


async def test_sigterm_publishes_the_spool_before_the_gateway_exits(tmp_path, nats_server):
    spool_dir = tmp_path / "spool"
    ids = [f"term-{i}" for i in range(4)]
    async with gateway_process(tmp_path, nats_server.url, spool_dir) as proc:
        await fail_requests_during_an_outage(nats_server, proc, ids, spool_dir)
        await nats_server.start()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0, proc.log_path.read_text()[-3000:]
    assert spool_files(spool_dir) == [], proc.log_path.read_text()[-3000:]
    assert await stored_request_ids(nats_server.url, "CASCADE_OUTCOMES") == Counter(ids)


async def test_a_request_in_flight_when_its_gateway_is_killed_still_gets_an_outcome(tmp_path, nats_server):
    """Found by bench.chaos: a SIGKILLed gateway's requests in flight had recorded their ids, never an outcome."""
    spool_dir = tmp_path / "spool"
    nc = await connect_nats(nats_server.url, name="scripted-tier")
    silent = ScriptedTier(nc, tier="large", behaviour="goes_silent")  # accepts, one chunk, then nothing
    await silent.start()
    try:
        async with (
            gateway_process(tmp_path, nats_server.url, spool_dir) as proc,
            aio.insecure_channel(proc.target) as channel,
        ):
            request = cascade_pb2.GenerateRequest(prompt="Hi", request_id="cut-1", policy=cascade_pb2.POLICY_LARGE)
            call = cascade_pb2_grpc.CascadeStub(channel).Generate(request, timeout=60)
            await eventually(lambda: bool(silent.requests), "the request reached the tier")
            os.kill(proc.pid, signal.SIGKILL)
            with pytest.raises(grpc.aio.AioRpcError):
                await call
    finally:
        await silent.stop()
        await nc.drain()
    settings = await next_gateway_drains(nats_server.url, spool_dir)
    nc = await connect_nats(nats_server.url, name="test-reader")
    try:
        events = [e async for e in read_events(nc.jetstream(), stream=settings.outcomes.stream, durable=None)]
    finally:
        await nc.drain()
    [event] = [e for e in events if e.request_id == "cut-1"]
    assert event.error.code == events_pb2.ERROR_CODE_UNAVAILABLE
    assert "the gateway stopped before the request finished" in event.error.message
    assert read_journal(spool_dir).events == []
