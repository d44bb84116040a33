"""Router models published to a real JetStream object store; routers load and hot-swap them."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest
from grpc import aio
from pydantic import ValidationError

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.errors import ModelError
from services.core.nats import connect_nats
from services.core.settings import DEFAULT_ROUTER_MODEL
from services.registry import store as registry
from services.registry.manage import ModelRegistry
from services.router.service import RouterService
from tests.support.data import LLMROUTER
from tests.support.model_files import ROUTER_VERSION as DEFAULT_VERSION
from tests.support.model_files import router_variant as variant
from tests.support.system import make_settings, openai_tier, run_system
from training.cli import main as cli_main


async def publish(nc, model_dir: Path, *, bucket: str = "models", kind: str = "router") -> str:
    """What `cascade train publish --force` does, without the gate."""
    version = json.loads((Path(model_dir) / CARD_FILE).read_text())["version"]
    reg = ModelRegistry(nc=nc, bucket=bucket)
    await reg.publish(
        kind=kind, model_dir=model_dir, version=version, by="test", reason="test", forced=False, gate=None
    )
    return version


@pytest.fixture
async def nc(nats_server):
    nc = await connect_nats(nats_server.url, name="test-registry")
    yield nc
    await nc.drain()


@pytest.fixture
def js(nc):
    return nc.jetstream()


async def test_publish_then_fetch_gives_the_same_bytes(nc, js, tmp_path):
    version = await publish(nc, DEFAULT_ROUTER_MODEL)
    assert version == DEFAULT_VERSION
    assert await registry.current_version(js, bucket="models") == version
    folder = await registry.fetch(js, bucket="models", cache_dir=tmp_path / "cache")
    assert folder == tmp_path / "cache" / "router" / version
    for name in (ONNX_FILE, CARD_FILE):
        assert (folder / name).read_bytes() == (DEFAULT_ROUTER_MODEL / name).read_bytes()
    # Cached: a second fetch, by version, reads nothing from NATS and returns the same folder.
    assert await registry.fetch(js, bucket="models", version=version, cache_dir=tmp_path / "cache") == folder
    assert [p.name for p in (tmp_path / "cache" / "router").iterdir()] == [version]  # no staging left behind


async def test_missing_bucket_version_or_bad_model_is_a_model_error(js, tmp_path):
    with pytest.raises(ModelError, match="no model bucket 'models'"):
        await registry.fetch(js, bucket="models", cache_dir=tmp_path)
    await registry.open_bucket(js, bucket="models", create=True)
    assert await registry.current_version(js, bucket="models") is None
    with pytest.raises(ModelError, match="no router model published"):
        await registry.fetch(js, bucket="models", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="no router model '20990101.nope'"):
        await registry.fetch(js, bucket="models", version="20990101.nope", cache_dir=tmp_path)
    # A model routers would refuse is never published (refused before NATS is asked).
    assert await asyncio.to_thread(cli_main, ["train", "publish", "--model", str(variant(tmp_path, "v9", schema="9"))])
    assert await registry.current_version(js, bucket="models") is None
    assert not any(tmp_path.glob(".*"))  # failed downloads leave no staging folders


async def publish_raw(js, *, bucket: str, version: str, onnx_bytes: bytes, card: dict) -> None:
    """What a broken publisher could leave: files the router must refuse, then `latest` moved."""
    obs = await js.object_store(bucket)
    await obs.put(f"router/{version}/{ONNX_FILE}", onnx_bytes)
    await obs.put(f"router/{version}/{CARD_FILE}", json.dumps(card).encode())
    await obs.put(f"router/{registry.LATEST}", version.encode())


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
    nats_server, fake_openai, nc, js, tmp_path, caplog, kind
):
    await publish(nc, DEFAULT_ROUTER_MODEL)
    settings = settings_for(nats_server, fake_openai, tmp_path, reload_interval_s=0.1)
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        assert await routed_version(stub) == DEFAULT_VERSION

        second = await publish(nc, variant(tmp_path, "20990101.second"))

        async def serves_second() -> bool:
            return await routed_version(stub) == second

        await eventually(serves_second)

        caplog.set_level(logging.ERROR, logger="services.router")
        bad, onnx_bytes, card = bad_version(tmp_path, kind)
        await publish_raw(js, bucket="models", version=bad, onnx_bytes=onnx_bytes, card=card)

        def refusals() -> int:
            return sum(f"refused published router model {bad}" in r.getMessage() for r in caplog.records)

        async def refused() -> bool:
            return refusals() > 0

        await eventually(refused)
        assert await routed_version(stub) == second
        await asyncio.sleep(0.3)  # a refused version is not tried again at every check
        assert refusals() == 1

        # A good version published after a bad one is still picked up.
        await publish(nc, variant(tmp_path, "20990103.third"))

        async def serves_third() -> bool:
            return await routed_version(stub) == "20990103.third"

        await eventually(serves_third)


async def test_pinned_version_is_served_even_when_latest_moves(nats_server, fake_openai, nc, tmp_path):
    await publish(nc, DEFAULT_ROUTER_MODEL)
    await publish(nc, variant(tmp_path, "20990101.second"))
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


def config_file(nats_server, tmp_path: Path) -> Path:
    """The one settings object the commands read: NATS URL and registry bucket."""
    path = tmp_path / "cascade.yaml"
    path.write_text(f"nats:\n  url: {nats_server.url}\nrouter:\n  registry_bucket: models\n")
    return path


@pytest.mark.usefixtures("routing_data")
async def test_cli_publishes_only_a_model_that_is_not_worse(nats_server, js, tmp_path, capsys):
    config = config_file(nats_server, tmp_path)

    def publish(model: Path, *extra: str) -> int:
        return cli_main(["train", "publish", "--model", str(model), "--config", str(config), *extra])

    worse = variant(tmp_path, "20990101.inverted", invert=True)
    data = ("--data", str(LLMROUTER))
    assert await asyncio.to_thread(publish, DEFAULT_ROUTER_MODEL) == 0  # nothing published yet: no comparison
    assert await asyncio.to_thread(publish, worse) == 1  # published already: wants --data or --force
    assert await asyncio.to_thread(publish, worse, *data) == 3
    out = capsys.readouterr().out
    assert "not published" in out and "candidate 20990101.inverted" in out
    found = re.search(r"candidate \S+ ([0-9.]+), serving \S+ ([0-9.]+)", out)
    assert found, out
    candidate, published = map(float, found.groups())
    assert candidate < 0.5 < published  # the inverted router is worse than a random one
    assert await registry.current_version(js, bucket="models") == DEFAULT_VERSION
    refused = (await registry.history(js, bucket="models", kind="router"))[-1]
    assert (refused["action"], refused["version"]) == ("refused", worse.name)
    assert refused["gate"]["candidate"] == pytest.approx(candidate, abs=1e-4)
    assert worse.name not in await registry.stored_versions(js, bucket="models", kind="router")

    assert await asyncio.to_thread(publish, worse, "--force") == 1  # forcing wants a reason on record
    assert await registry.current_version(js, bucket="models") == DEFAULT_VERSION
    assert await asyncio.to_thread(publish, worse, "--force", "--reason", "canary on purpose", "--by", "ops-ann") == 0
    assert await registry.current_version(js, bucket="models") == "20990101.inverted"
    record = (await registry.publication(js, bucket="models", kind="router", version=worse.name))["record"]
    assert record["forced"] is True and record["by"] == "ops-ann" and record["reason"] == "canary on purpose"
    assert record["previous_version"] == DEFAULT_VERSION and record["time"]

    # Equal is "not worse"; a required gain is a margin on top.
    same = variant(tmp_path, "20990102.same", invert=True)
    assert await asyncio.to_thread(publish, same, *data, "--min-gain", "0.001") == 3
    assert await asyncio.to_thread(publish, same, *data) == 0
    assert await asyncio.to_thread(publish, DEFAULT_ROUTER_MODEL, *data, "--min-gain", "0.01") == 0
    assert "published router " + DEFAULT_VERSION in capsys.readouterr().out
    assert await registry.current_version(js, bucket="models") == DEFAULT_VERSION
    record = (await registry.publication(js, bucket="models", kind="router", version=DEFAULT_VERSION))["record"]
    assert record["forced"] is False and record["gate"]["metric"] == "APGR"


def test_a_router_takes_a_path_or_a_published_version_not_both(tmp_path):
    tier = openai_tier("http://127.0.0.1:1/v1")
    with pytest.raises(ValidationError, match="not both"):
        make_settings("nats://x", {"small": tier, "large": tier}, router={"published": "latest", "model": tmp_path})
    with pytest.raises(ValidationError, match="published"):
        make_settings("nats://x", {"small": tier, "large": tier}, router={"published": "../etc"})
    s = make_settings("nats://x", {"small": tier, "large": tier}, router={"published": "latest"})
    assert s.router.registry_bucket == registry.DEFAULT_BUCKET == "cascade-models"
