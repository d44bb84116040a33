"""Configuration is validated once, with clear errors; env beats file; paths resolve beside the file."""

from pathlib import Path

import pytest

from services.core.errors import ConfigError
from services.core.settings import CascadeSettings, load_settings

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


TIERS = """
tiers:
  small: {backend: replay, replay: {data: data/x.parquet, model: m}}
  large:
    backend: openai
    openai: {model: big, base_url: "http://h:1/v1"}
    price: {input_per_mtok: 1, output_per_mtok: 2}
"""


def test_relative_paths_resolve_beside_the_file(tmp_path):
    s = load_settings(write(tmp_path, TIERS + "router: {model: models/r}\n"))
    assert s.tiers["small"].replay.data == tmp_path / "data/x.parquet"
    assert s.router.model == tmp_path / "models/r"
    assert s.tiers["large"].price.cost(1_000_000, 1_000_000) == 3.0


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_NATS__URL", "nats://elsewhere:4222")
    monkeypatch.setenv("CASCADE_GATEWAY__PORT", "6000")
    s = load_settings(write(tmp_path, TIERS + "nats: {url: nats://file:4222}\n"))
    assert s.nats.url == "nats://elsewhere:4222" and s.gateway.port == 6000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tiers: {}\n", "not configured"),
        (TIERS + "gateway: {port: -1}\n", "port"),
        (TIERS + "bogus: 1\n", "bogus"),
        ("tiers:\n  small: {backend: openai}\n", "openai"),
        ("- a list\n", "mapping"),
        (TIERS + "nats: {max_payload_bytes: 1048576}\n", "must be below nats.max_payload_bytes"),
    ],
)
def test_bad_config_is_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("name", ["configs/cascade.example.yaml", "configs/cascade.replay.yaml", "docker/cascade.yaml"])
def test_shipped_configs_are_valid(name):
    s = load_settings(REPO / name)
    assert {"small", "large"} <= set(s.tiers)


def test_compose_file_runs_every_service_against_the_shipped_config():
    import yaml

    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]
    assert {"nats", "router", "tier-small", "tier-large", "gateway", "vllm-small", "vllm-large"} <= set(compose)
    settings = load_settings(REPO / "docker" / "cascade.yaml")
    for tier in settings.tiers:
        assert compose[f"tier-{tier}"]["command"][-1] == tier


def test_built_in_defaults_run_the_two_local_vllm_servers(monkeypatch):
    monkeypatch.delenv("CASCADE_CONFIG", raising=False)
    s = load_settings(None)
    assert s.nats.url is None  # `cascade up` starts its own nats-server
    assert s.tiers["small"].openai.base_url == "http://127.0.0.1:8000/v1"
    assert s.tiers["large"].openai.base_url == "http://127.0.0.1:8001/v1"
    assert s.router.model.joinpath("router.onnx").exists()


def test_a_tier_name_that_cannot_be_a_subject_token_is_a_config_error():
    replay = {"backend": "replay", "replay": {"data": "x.parquet", "model": "m"}}
    with pytest.raises(ValueError, match=r"tier names take letters, digits, '-' and '_' only: \['a.b'\]"):
        CascadeSettings(tiers={"small": replay, "large": replay, "a.b": replay})
