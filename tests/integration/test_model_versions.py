"""`cascade model list | show | promote | rollback` on a real nats-server: history, events, old buckets."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from cascade.v1 import events_pb2
from classifier.contract import CARD_FILE, ONNX_FILE
from services.cli.main import main as cascade_main
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, DEFAULT_ROUTER_MODEL
from services.registry import store
from services.registry.manage import ModelRegistry
from tests.integration.test_model_registry import config_file, publish
from tests.support.data import MMLU_PRO
from tests.support.model_files import ROUTER_VERSION, SCORER_VERSION, router_variant, scorer_variant


@pytest.fixture
async def nc(nats_server):
    nc = await connect_nats(nats_server.url, name="test-versions")
    yield nc
    await nc.drain()


async def events_on(nc) -> list[events_pb2.ModelEvent]:
    seen: list[events_pb2.ModelEvent] = []

    async def got(msg) -> None:
        seen.append(events_pb2.ModelEvent.FromString(msg.data))

    await nc.subscribe(subjects.MODEL_EVENTS, cb=got)
    await nc.flush()
    return seen


def cascade(*argv: str) -> int:
    try:
        cascade_main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


async def test_promote_and_rollback_move_latest_keep_history_and_announce(nats_server, nc, tmp_path, capsys):
    config = str(config_file(nats_server, tmp_path))
    events = await events_on(nc)
    for version in ("20990101.a", "20990102.b", "20990103.c"):
        await publish(nc, router_variant(tmp_path, version))
    await publish(nc, scorer_variant(tmp_path, "scorer-20990101.s"), kind="scorer")
    js = nc.jetstream()

    async def active(kind: str = "router") -> str | None:
        return await store.current_version(js, bucket="models", kind=kind)

    async def model(*argv: str) -> int:
        return await asyncio.to_thread(cascade, "model", "--config", config, *argv)

    assert await model("promote", "20990101.a", "--reason", "b and c misroute code", "--by", "ops-ann") == 0
    assert await active() == "20990101.a"
    assert await active("scorer") == "scorer-20990101.s"  # kinds move separately
    assert await model("rollback", "--kind", "router") == 0
    assert await active() == "20990103.c"
    assert await model("rollback", "--kind", "router") == 0
    assert await active() == "20990102.b"
    assert await model("rollback", "--kind", "router") == 0
    assert await active() == "20990101.a"
    capsys.readouterr()
    assert await model("rollback", "--kind", "router") == 1  # nothing earlier was ever active
    assert "no earlier active router version" in capsys.readouterr().err
    assert await model("promote", "20990109.never") == 1
    assert "'20990109.never' is stored under no kind" in capsys.readouterr().err
    assert await model("promote", "20990109.never", "--kind", "router") == 1
    assert await active() == "20990101.a"

    await nc.flush()
    got = [(e.kind, e.action, e.version, e.previous_version) for e in events]
    assert got == [
        ("router", "published", "20990101.a", ""),
        ("router", "published", "20990102.b", "20990101.a"),
        ("router", "published", "20990103.c", "20990102.b"),
        ("scorer", "published", "scorer-20990101.s", ""),
        ("router", "promoted", "20990101.a", "20990103.c"),
        ("router", "rolled_back", "20990103.c", "20990101.a"),
        ("router", "rolled_back", "20990102.b", "20990103.c"),
        ("router", "rolled_back", "20990101.a", "20990102.b"),
    ]
    assert events[4].reason == "b and c misroute code (by ops-ann)" and events[4].time.seconds > 0
    history = await store.history(js, bucket="models", kind="router")
    assert [h["action"] for h in history] == ["published"] * 3 + ["promoted"] + ["rolled_back"] * 3

    assert await model("list", "--kind", "router") == 0
    out = capsys.readouterr().out
    assert "router: active 20990101.a" in out
    assert " * 20990101.a" in out and "   20990103.c" in out
    assert await model("show", "scorer-20990101.s") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "scorer" and shown["active"] is True
    assert shown["card"]["version"] == "scorer-20990101.s" and shown["record"]["by"] == "test"


async def test_a_bucket_of_the_old_layout_is_read_as_routers(nats_server, nc, tmp_path, capsys):
    """Before scorers joined, a bucket held <version>/router.onnx and a top-level `latest`."""
    js = nc.jetstream()
    obs = await store.open_bucket(js, bucket="models", create=True)
    for name in (ONNX_FILE, CARD_FILE):
        await obs.put(f"{ROUTER_VERSION}/{name}", (DEFAULT_ROUTER_MODEL / name).read_bytes())
    await obs.put("latest", ROUTER_VERSION.encode())

    assert await store.current_version(js, bucket="models") == ROUTER_VERSION
    assert await store.current_version(js, bucket="models", kind="scorer") is None
    assert await store.stored_versions(js, bucket="models", kind="router") == [ROUTER_VERSION]
    folder = await store.fetch(js, bucket="models", cache_dir=tmp_path / "cache")
    assert (folder / ONNX_FILE).read_bytes() == (DEFAULT_ROUTER_MODEL / ONNX_FILE).read_bytes()

    # The next publication writes the new layout, which wins; the old version stays promotable.
    await publish(nc, router_variant(tmp_path, "20990101.new"))
    assert await store.current_version(js, bucket="models") == "20990101.new"
    reg = ModelRegistry(nc=nc, bucket="models")
    await reg.promote(kind="router", version=ROUTER_VERSION, by="test", reason="back to the old one")
    assert await store.current_version(js, bucket="models") == ROUTER_VERSION
    config = str(config_file(nats_server, tmp_path))
    assert await asyncio.to_thread(cascade, "model", "--config", config, "list") == 0
    out = capsys.readouterr().out
    assert f" * {ROUTER_VERSION}" in out and "scorer: active (none)" in out
    assert SCORER_VERSION not in out


@pytest.mark.usefixtures("routing_data")
async def test_cli_publishes_a_scorer_only_if_its_escalation_apgr_is_not_worse(nats_server, nc, tmp_path, capsys):
    config = str(config_file(nats_server, tmp_path))
    events = await events_on(nc)

    def publish_scorer(folder: Path, *extra: str) -> int:
        return cascade("train", "publish", "--model", str(folder), "--config", config, *extra)

    data = ("--data", str(MMLU_PRO), "--sample", "400")
    assert await asyncio.to_thread(publish_scorer, DEFAULT_CONFIDENCE_MODEL) == 0
    worse = scorer_variant(tmp_path, "scorer-20990101.inverted", invert=True)
    assert await asyncio.to_thread(publish_scorer, worse, *data) == 3
    out = capsys.readouterr().out
    found = re.search(r"escalation APGR on \d+ held-out answers: candidate \S+ ([0-9.]+), serving \S+ ([0-9.]+)", out)
    assert found, out
    candidate, serving = map(float, found.groups())
    assert candidate < serving
    js = nc.jetstream()
    assert await store.current_version(js, bucket="models", kind="scorer") == SCORER_VERSION
    assert await store.current_version(js, bucket="models", kind="router") is None  # kinds are apart
    same = scorer_variant(tmp_path, "scorer-20990102.same")
    assert await asyncio.to_thread(publish_scorer, same, *data) == 0  # equal is not worse
    assert await store.current_version(js, bucket="models", kind="scorer") == same.name
    record = (await store.publication(js, bucket="models", kind="scorer", version=same.name))["record"]
    assert record["gate"]["metric"] == "escalation APGR" and record["gate"]["candidate"] == record["gate"]["serving"]
    await nc.flush()
    assert [(e.kind, e.action, e.version) for e in events] == [
        ("scorer", "published", SCORER_VERSION),
        ("scorer", "refused", worse.name),
        ("scorer", "published", same.name),
    ]
