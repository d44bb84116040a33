"""The Grafana dashboard and the Prometheus config in docker/ ask for series the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from opentelemetry.metrics import Counter, Histogram, ObservableGauge

from services.core import metrics

DOCKER = Path(__file__).resolve().parents[2] / "docker"
# How the Prometheus exporter names an instrument: dots to underscores, the unit's suffix, _total on counters.
UNIT_SUFFIX = {"s": "_seconds", "usd": "_usd", "By": "_bytes"}


def exported_families() -> dict[str, set[str]]:
    """Each instrument's Prometheus family name, and the series names it exports."""
    families = {}
    for instrument in vars(metrics).values():
        if not isinstance(instrument, Counter | Histogram | ObservableGauge):
            continue
        # The module's instruments are the API's proxies; their name and unit are not public there.
        family = instrument._name.replace(".", "_") + UNIT_SUFFIX.get(instrument._unit or "", "")  # type: ignore[attr-defined]
        if isinstance(instrument, Counter):
            families[family] = {f"{family}_total"}
        elif isinstance(instrument, Histogram):
            families[family] = {f"{family}_{part}" for part in ("bucket", "count", "sum")}
        else:
            families[family] = {family}
    return families


def test_the_dashboard_shows_every_metric_and_nothing_else():
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "cascade.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    wanted = {name for expr in exprs for name in re.findall(r"\bcascade_[a-z_]+", expr)}
    families = exported_families()
    assert wanted <= set().union(*families.values()), sorted(wanted - set().union(*families.values()))
    shown = {family for family, series in families.items() if series & wanted}
    assert shown == set(families), sorted(set(families) - shown)


def test_prometheus_scrapes_every_cascade_service_of_the_compose_file():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    cascade = {name for name, svc in compose["services"].items() if svc.get("image") == "prompt-cascade:latest"}
    config = yaml.safe_load((DOCKER / "prometheus.yaml").read_text())
    scraped = {name for job in config["scrape_configs"] for sd in job["dns_sd_configs"] for name in sd["names"]}
    assert scraped == cascade
    assert all(sd["port"] == 9464 for job in config["scrape_configs"] for sd in job["dns_sd_configs"])
    env = compose["x-cascade"]["environment"]
    assert env["CASCADE_TELEMETRY__METRICS_PORT"] == "9464"
