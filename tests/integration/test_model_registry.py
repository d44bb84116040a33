"""Router models published to a real JetStream object store; routers load and hot-swap them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import onnx
import pytest
from grpc import aio
from onnx import numpy_helper
from pydantic import ValidationError

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.errors import ModelError
from services.core.nats import connect_nats
from services.core.settings import DEFAULT_ROUTER_MODEL
from services.router import registry
from services.router.service import RouterService
from tests.support.data import LLMROUTER
from tests.support.system import make_settings, openai_tier, run_system
from training.cli import main as cli_main
from training.export import set_metadata

DEFAULT_VERSION = json.loads((DEFAULT_ROUTER_MODEL / CARD_FILE).read_text())["version"]


def variant(tmp_path: Path, version: str, *, invert: bool = False, schema: str | None = None) -> Path:
    """The default model under another version; ``invert``: scores flipped (a worse router)."""
    model = onnx.load(str(DEFAULT_ROUTER_MODEL / ONNX_FILE))
    card = json.loads((DEFAULT_ROUTER_MODEL / CARD_FILE).read_text())
    card["version"] = version
    if schema is not None:
        card["schema_version"] = schema
    if invert:  # sigmoid(-z) = 1 - sigmoid(z): the ranking of every prompt is reversed
        for init in model.graph.initializer:
            if init.name in ("w0", "b0"):
                init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    set_metadata(model, card)
    out = tmp_path / version
    out.mkdir()
    onnx.save(model, str(out / ONNX_FILE))
    (out / CARD_FILE).write_text(json.dumps(card))
    return out


@pytest.fixture
async def js(nats_server):
    nc = await connect_nats(nats_server.url, name="test-registry")
    yield nc.jetstream()
    await nc.drain()


async def test_publish_then_fetch_gives_the_same_bytes(js, tmp_path):
    version = await registry.publish(js, model_dir=DEFAULT_ROUTER_MODEL, bucket="models")
    assert version == DEFAULT_VERSION
    assert await registry.current_version(js, bucket="models") == version
    folder = await registry.fetch(js, bucket="models", cache_dir=tmp_path / "cache")
    assert folder == tmp_path / "cache" / version
    for name in (ONNX_FILE, CARD_FILE):
        assert (folder / name).read_bytes() == (DEFAULT_ROUTER_MODEL / name).read_bytes()
    # Cached: a second fetch, by version, reads nothing from NATS and returns the same folder.
    assert await registry.fetch(js, bucket="models", version=version, cache_dir=tmp_path / "cache") == folder
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [version]  # no staging left behind


async def test_missing_bucket_version_or_bad_model_is_a_model_error(js, tmp_path):
    with pytest.raises(ModelError, match="no model bucket 'models'"):
        await registry.fetch(js, bucket="models", cache_dir=tmp_path)
    await registry.open_bucket(js, bucket="models", create=True)
    assert await registry.current_version(js, bucket="models") is None
    with pytest.raises(ModelError, match="no model published"):
        await registry.fetch(js, bucket="models", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="has no '20990101.nope/router.onnx'"):
        await registry.fetch(js, bucket="models", version="20990101.nope", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="schema version"):  # a model routers would refuse is never published
        await registry.publish(js, model_dir=variant(tmp_path, "v9", schema="9"), bucket="models")
    assert await registry.current_version(js, bucket="models") is None
    assert not any(tmp_path.glob(".*"))  # failed downloads leave no staging folders


async def publish_raw(js, *, bucket: str, version: str, onnx_bytes: bytes, card: dict) -> None:
    """What a broken publisher could leave: files the router must refuse, then `latest` moved."""
    obs = await js.object_store(bucket)
    await obs.put(f"{version}/{ONNX_FILE}", onnx_bytes)
    await obs.put(f"{version}/{CARD_FILE}", json.dumps(card).encode())
    await obs.put(registry.LATEST, version.encode())


def settings_for(nats_server, fake_openai, tmp_path: Path, **router):
    tier = openai_tier(fake_openai.base_url)
    router = {"published": "latest", "registry_bucket": "models", "cache_dir": tmp_path / "cache", **router}
    return make_settings(nats_server.url, {"small": tier, "large": tier}, router=router)


async def routed_version(stub) -> str:
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is 2 + 2?", max_tokens=8), timeout=10)
    assert not resp.route.router_error
    return resp.route.router_model_version


async def eventually(check, *, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def bad_version(tmp_path: Path, kind: str) -> tuple[str, bytes, dict]:
    version = f"20990102.{kind}"
    card = json.loads((DEFAULT_ROUTER_MODEL / CARD_FILE).read_text()) | {"version": version}
    if kind == "corrupt-file":
        return version, b"not an onnx file", card
    folder = variant(tmp_path, version, schema="9")  # loadable ONNX, but a schema this code cannot read
    return version, (folder / ONNX_FILE).read_bytes(), card


@pytest.mark.parametrize("kind", ["corrupt-file", "wrong-schema"])
async def test_router_follows_latest_and_keeps_serving_through_a_bad_version(
    nats_server, fake_openai, js, tmp_path, caplog, kind
):
    await registry.publish(js, model_dir=DEFAULT_ROUTER_MODEL, bucket="models")
    settings = settings_for(nats_server, fake_openai, tmp_path, reload_interval_s=0.1)
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        assert await routed_version(stub) == DEFAULT_VERSION

        second = await registry.publish(js, model_dir=variant(tmp_path, "20990101.second"), bucket="models")

        async def serves_second() -> bool:
            return await routed_version(stub) == second

        await eventually(serves_second)

        caplog.set_level(logging.ERROR, logger="services.router")
        bad, onnx_bytes, card = bad_version(tmp_path, kind)
        await publish_raw(js, bucket="models", version=bad, onnx_bytes=onnx_bytes, card=card)

        def refusals() -> int:
            return sum(
                f"refused new router model at {tmp_path / 'cache' / bad}" in r.getMessage() for r in caplog.records
            )

        async def refused() -> bool:
            return refusals() > 0

        await eventually(refused)
        assert await routed_version(stub) == second
        await asyncio.sleep(0.3)  # a refused version is not tried again at every check
        assert refusals() == 1

        # A good version published after a bad one is still picked up.
        await registry.publish(js, model_dir=variant(tmp_path, "20990103.third"), bucket="models")

        async def serves_third() -> bool:
            return await routed_version(stub) == "20990103.third"

        await eventually(serves_third)


async def test_pinned_version_is_served_even_when_latest_moves(nats_server, fake_openai, js, tmp_path):
    await registry.publish(js, model_dir=DEFAULT_ROUTER_MODEL, bucket="models")
    await registry.publish(js, model_dir=variant(tmp_path, "20990101.second"), bucket="models")
    settings = settings_for(nats_server, fake_openai, tmp_path, published=DEFAULT_VERSION)
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        assert await routed_version(cascade_pb2_grpc.CascadeStub(channel)) == DEFAULT_VERSION


async def test_router_does_not_start_without_a_published_model(nats_server, fake_openai, tmp_path):
    settings = settings_for(nats_server, fake_openai, tmp_path)
    nc = await connect_nats(nats_server.url, name="test-router")
    try:
        with pytest.raises(ModelError, match="no model bucket"):
            await RouterService(nc=nc, settings=settings).start()
    finally:
        await nc.drain()


@pytest.mark.usefixtures("routing_data")
async def test_cli_publishes_only_a_better_model(nats_server, js, tmp_path, capsys):
    def publish(model: Path, *extra: str) -> int:
        argv = ["train", "publish", "--model", str(model), "--nats", nats_server.url, "--bucket", "models"]
        return cli_main([*argv, *extra])

    worse = variant(tmp_path, "20990101.inverted", invert=True)
    data = ("--data", str(LLMROUTER))
    assert await asyncio.to_thread(publish, DEFAULT_ROUTER_MODEL) == 0  # nothing published yet: no comparison
    assert await asyncio.to_thread(publish, worse) == 1  # published already: wants --data or --force
    assert await asyncio.to_thread(publish, worse, *data) == 3
    out = capsys.readouterr().out
    assert "not published" in out and "candidate 20990101.inverted" in out
    found = re.search(r"candidate \S+ ([0-9.]+), published \S+ ([0-9.]+)", out)
    assert found, out
    candidate, published = map(float, found.groups())
    assert candidate < 0.5 < published  # the inverted router is worse than a random one
    assert await registry.current_version(js, bucket="models") == DEFAULT_VERSION

    assert await asyncio.to_thread(publish, worse, "--force") == 0
    assert await registry.current_version(js, bucket="models") == "20990101.inverted"
    assert await asyncio.to_thread(publish, DEFAULT_ROUTER_MODEL, *data, "--min-gain", "0.01") == 0
    assert "published " + DEFAULT_VERSION in capsys.readouterr().out
    assert await registry.current_version(js, bucket="models") == DEFAULT_VERSION


def test_a_router_takes_a_path_or_a_published_version_not_both(tmp_path):
    tier = openai_tier("http://127.0.0.1:1/v1")
    with pytest.raises(ValidationError, match="not both"):
        make_settings("nats://x", {"small": tier, "large": tier}, router={"published": "latest", "model": tmp_path})
    with pytest.raises(ValidationError, match="published"):
        make_settings("nats://x", {"small": tier, "large": tier}, router={"published": "../etc"})
    s = make_settings("nats://x", {"small": tier, "large": tier}, router={"published": "latest"})
    assert s.router.registry_bucket == registry.DEFAULT_BUCKET == "cascade-models"
