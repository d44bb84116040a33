"""Hot reload under load: requests in flight through real NATS and gRPC while new router and scorer
versions are published, promoted and rolled back; a scorer that cannot serve is refused."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from classifier.contract import CARD_FILE
from services.core.errors import ModelError
from services.core.nats import connect_nats
from services.gateway.server import GatewayService
from services.outcomes import read_events
from services.registry.manage import ModelRegistry
from tests.integration.test_model_registry import eventually, publish
from tests.support.model_files import SCORER_ONNX, router_variant, scorer_variant
from tests.support.system import make_settings, openai_tier, run_system

ROUTER_1, ROUTER_2 = "20990101.r1", "20990102.r2"
SCORER_1, SCORER_2 = "scorer-20990101.s1", "scorer-20990102.s2"


@pytest.fixture
async def nc(nats_server):
    nc = await connect_nats(nats_server.url, name="test-hot-reload")
    yield nc
    await nc.drain()


def settings_for(nats_server, fake_openai, tmp_path: Path, *, scorer: str = "latest", router_mode: str = "service"):
    tier = openai_tier(fake_openai.base_url)
    return make_settings(
        nats_server.url,
        {"small": tier, "large": tier},
        # An hour between polls: within the test only ModelEvents can trigger a switch.
        router={"published": "latest", "registry_bucket": "models", "cache_dir": tmp_path / "cache"}
        | {"reload_interval_s": 3600, "mode": router_mode},
        escalation={"confidence": "scorer", "published": scorer},
    )


@dataclass(frozen=True)
class Answered:
    started: int  # the order in which requests began
    finished: int  # the order in which they were answered
    router: str
    scorer: str
    request_id: str


class Load:
    """Clients sending requests back to back until stopped; every result and failure is kept."""

    def __init__(self, stub: cascade_pb2_grpc.CascadeStub, *, clients: int) -> None:
        self._stub, self._clients = stub, clients
        self._order, self._done = itertools.count(), itertools.count()
        self.started = self.finished = 0
        self.answered: list[Answered] = []
        self.failed: list[BaseException] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def __enter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self._clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def __exit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()

    async def _client(self, i: int) -> None:
        while not self._stop.is_set():
            started = self.started = next(self._order)
            prompt = f"client {i} request {started}: what is {started} + {i}?"
            try:
                resp = await self._stub.Generate(cascade_pb2.GenerateRequest(prompt=prompt, max_tokens=8), timeout=30)
            except Exception as exc:  # kept, not raised: the test asserts there are none
                self.failed.append(exc)
                continue
            r = resp.route
            if r.router_error:
                self.failed.append(RuntimeError(f"router error: {r.router_error}"))
            self.finished = next(self._done)
            self.answered.append(
                Answered(started, self.finished, r.router_model_version, r.confidence_model_version, resp.request_id)
            )

    async def until(self, n: int) -> None:
        """Until ``n`` more requests are answered (or failed)."""
        target = len(self.answered) + len(self.failed) + n

        async def done() -> bool:
            return len(self.answered) + len(self.failed) >= target

        await eventually(done, timeout_s=60)


# embedded: the gateway scores prompts itself (no router process runs) and follows the registry the same way.
@pytest.mark.parametrize("router_mode", ["service", "embedded"])
async def test_requests_in_flight_never_fail_while_models_are_swapped(
    nats_server, fake_openai, nc, tmp_path, router_mode
):
    await publish(nc, router_variant(tmp_path, ROUTER_1))
    await publish(nc, scorer_variant(tmp_path, SCORER_1), kind="scorer")
    registry = ModelRegistry(nc=nc, bucket="models")
    settings = settings_for(nats_server, fake_openai, tmp_path, router_mode=router_mode)
    embedded = router_mode == "embedded"
    async with (
        run_system(nats_server, settings, run_router=not embedded) as system,
        aio.insecure_channel(system.target) as channel,
    ):
        stub = cascade_pb2_grpc.CascadeStub(channel)
        router = system.gateway.router.routing if system.gateway.router else system.router.routing

        def serving() -> tuple[str, str]:
            return router.version(), system.gateway.cascade.confidence.version

        with Load(stub, clients=6) as load:
            await load.until(20)
            await publish(nc, router_variant(tmp_path, ROUTER_2))
            await publish(nc, scorer_variant(tmp_path, SCORER_2), kind="scorer")

            async def swapped() -> bool:
                return serving() == (ROUTER_2, SCORER_2)

            await eventually(swapped, timeout_s=30)
            after_first = load.started
            await load.until(20)
            before_rollback = load.finished
            await registry.rollback(kind="router", by="test", reason="back")
            await registry.rollback(kind="scorer", by="test", reason="back")

            async def rolled_back() -> bool:
                return serving() == (ROUTER_1, SCORER_1)

            await eventually(rolled_back, timeout_s=30)
            after_second = load.started
            await load.until(20)
            await load.stop()

    assert load.failed == []
    versions = {(a.router, a.scorer) for a in load.answered}
    assert versions <= {(r, s) for r in (ROUTER_1, ROUTER_2) for s in (SCORER_1, SCORER_2)}
    assert (ROUTER_2, SCORER_2) in versions
    # Every request that began once the new models served, and was answered before the rollback,
    # names them; every one that began once the old ones served again names those.
    assert sum(a.started > after_first and a.finished < before_rollback for a in load.answered) >= 10
    for a in load.answered:
        if a.started > after_first and a.finished < before_rollback:
            assert (a.router, a.scorer) == (ROUTER_2, SCORER_2), a
        elif a.started > after_second:
            assert (a.router, a.scorer) == (ROUTER_1, SCORER_1), a
    assert sum(a.started > after_second for a in load.answered) >= 10

    # The outcome records name the same versions as the replies.
    by_id = {a.request_id: (a.router, a.scorer) for a in load.answered}
    recorded = {}
    async for event in read_events(nc.jetstream(), stream=settings.outcomes.stream, durable=None):
        if isinstance(event, events_pb2.OutcomeEvent):
            recorded[event.request_id] = (event.route.router_model_version, event.route.confidence_model_version)
    assert set(by_id) <= set(recorded)
    assert {rid: recorded[rid] for rid in by_id} == by_id


def broken_scorer(tmp_path: Path, version: str, kind: str) -> Path:
    if kind == "nan-scores":  # loads, but scores a probe NaN: the check after loading refuses it
        folder = scorer_variant(tmp_path, version)
        model = onnx.load(str(folder / SCORER_ONNX))
        for node in model.graph.node:
            for attr in node.attribute if node.op_type == "LinearClassifier" else ():
                if attr.name == "intercepts":
                    attr.floats[:] = [float("nan")] * len(attr.floats)
        onnx.save(model, str(folder / SCORER_ONNX))
        return folder
    folder = tmp_path / version
    folder.mkdir()
    (folder / SCORER_ONNX).write_bytes(b"not an onnx file")
    (folder / CARD_FILE).write_text(json.dumps({"version": version}))
    return folder


@pytest.mark.parametrize("kind", ["corrupt-file", "nan-scores"])
async def test_a_scorer_that_cannot_serve_is_refused_and_the_old_one_keeps_serving(
    nats_server, fake_openai, nc, tmp_path, caplog, kind
):
    await publish(nc, router_variant(tmp_path, ROUTER_1))
    await publish(nc, scorer_variant(tmp_path, SCORER_1), kind="scorer")
    settings = settings_for(nats_server, fake_openai, tmp_path)
    caplog.set_level(logging.ERROR, logger="services.registry")
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        bad = "scorer-20990109.bad"
        # Stored as a broken publisher could leave it (publish_cmd would refuse to upload it), then promoted.
        obs = await nc.jetstream().object_store("models")
        for path in broken_scorer(tmp_path, bad, kind).iterdir():
            await obs.put(f"scorer/{bad}/{path.name}", path.read_bytes())
        await ModelRegistry(nc=nc, bucket="models").promote(kind="scorer", version=bad, by="test", reason="broken")

        async def refused() -> bool:
            return any(f"refused published scorer model {bad}" in r.getMessage() for r in caplog.records)

        await eventually(refused)
        resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is 2 + 2?", max_tokens=8), timeout=10)
        assert resp.route.confidence_model_version == SCORER_1
        assert system.gateway.cascade.confidence.version == SCORER_1

        # A good version after the bad one is still taken.
        await publish(nc, scorer_variant(tmp_path, SCORER_2), kind="scorer")

        async def serves_second() -> bool:
            return system.gateway.cascade.confidence.version == SCORER_2

        await eventually(serves_second)
        resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is 3 + 3?", max_tokens=8), timeout=10)
        assert resp.route.confidence_model_version == SCORER_2


async def test_a_gateway_with_a_pinned_scorer_serves_it_and_does_not_start_without_one(
    nats_server, fake_openai, nc, tmp_path
):
    await publish(nc, router_variant(tmp_path, ROUTER_1))
    settings = settings_for(nats_server, fake_openai, tmp_path, scorer=SCORER_1)
    gw_nc = await connect_nats(nats_server.url, name="test-gateway")
    try:
        with pytest.raises(ModelError, match="no scorer model 'scorer-20990101.s1'"):
            await GatewayService(nc=gw_nc, settings=settings).start()
    finally:
        with contextlib.suppress(Exception):
            await gw_nc.drain()
    await publish(nc, scorer_variant(tmp_path, SCORER_1), kind="scorer")
    await publish(nc, scorer_variant(tmp_path, SCORER_2), kind="scorer")
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is 2 + 2?", max_tokens=8), timeout=10)
        assert (resp.route.router_model_version, resp.route.confidence_model_version) == (ROUTER_1, SCORER_1)
