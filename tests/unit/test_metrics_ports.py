"""`cascade up` gives every process its own Prometheus port, and checks them like its other ports."""

from __future__ import annotations

import pytest

from services.cli.preflight import check_ports, listen_addresses, metrics_ports
from services.core.errors import ConfigError
from services.core.settings import CascadeSettings
from tests.support.system import openai_tier

TIER = openai_tier("http://127.0.0.1:9/v1")


def settings(**telemetry: object) -> CascadeSettings:
    tiers = {"small": TIER, "mid": TIER, "large": TIER}
    return CascadeSettings(tiers=tiers, telemetry=telemetry, gateway={"port": 9450}, http={"port": 9451})


def test_consecutive_ports_from_the_configured_one():
    assert metrics_ports(settings(metrics_port=9464)) == [
        ("gateway", 9464),
        ("http", 9465),
        ("router", 9466),
        ("tier-small", 9467),
        ("tier-mid", 9468),
        ("tier-large", 9469),
    ]


def test_an_embedded_tier_has_no_worker_process_and_no_port_of_its_own():
    tiers = {"small": {**TIER, "mode": "embedded"}, "mid": TIER, "large": TIER}
    embedded = CascadeSettings(tiers=tiers, telemetry={"metrics_port": 9464}, gateway={"port": 9450})
    assert embedded.worker_tiers == ("mid", "large")  # what `cascade up` starts and waits for
    assert [name for name, _ in metrics_ports(embedded)] == ["gateway", "http", "router", "tier-mid", "tier-large"]


@pytest.mark.parametrize("port", [None, 0])
def test_no_port_no_endpoints(port):
    assert metrics_ports(settings(metrics_port=port)) == []


def test_metrics_ports_are_checked_with_the_others():
    addresses = listen_addresses(settings(metrics_port=9464))
    assert ("the metrics of tier-large (telemetry.metrics_port)", "127.0.0.1", 9469) in addresses
    clash = r"metrics of gateway .* and the gateway \(gateway\) are both configured on port 9450"
    with pytest.raises(ConfigError, match=clash):
        check_ports(listen_addresses(settings(metrics_port=9450)))
