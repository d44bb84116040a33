"""Policy replay reports: the JSON, the printed table and the quality-versus-cost plot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from classifier.policy import CalibratedPolicy
from training.policy_calibrate import escalation_thresholds, router_thresholds, sweep
from training.policy_sim import Outcome, Replay, simulate_route, summarise

_COLUMNS = [
    ("quality", "quality", "{:.4f}"),
    ("quality_relative", "vs large", "{:.1%}"),
    ("cost_per_1k_usd", "$/1k req", "{:.4f}"),
    ("large_share", "large", "{:.1%}"),
    ("second_opinion_share", "2nd op.", "{:.1%}"),
    ("added_latency_ms", "+ms mean", "{:.1f}"),
]


def curves(r: Replay, *, cascade: CalibratedPolicy) -> dict[str, dict[str, list[float]]]:
    """Cascade over escalation thresholds (its own second-opinion mode, never and parallel), route over
    router thresholds: cost per 1k and quality at each point."""
    out = {}
    for mode in dict.fromkeys([cascade.second_opinion, "never", "parallel"]):
        m = sweep(r, replace(cascade, second_opinion=mode), escalation_thresholds(r))
        out[f"cascade ({mode})"] = {"cost_per_1k_usd": m["cost"].tolist(), "quality": m["quality"].tolist()}
    route = [summarise(simulate_route(r, t), large_quality=1.0) for t in router_thresholds(r.router)]
    out["route"] = {k: [p[k] for p in route] for k in ("cost_per_1k_usd", "quality")}
    return out


def write_report(
    *,
    out: Path,
    replay: Replay,
    outcomes: dict[str, Outcome],
    meta: dict[str, Any],
    cascade: CalibratedPolicy,
) -> dict[str, Any]:
    """Write ``out/policies.json`` and ``out/policies.png``; return the report."""
    large_quality = float(replay.q_large.mean())
    report = {
        **meta,
        "large_quality": large_quality,
        "policies": {name: summarise(o, large_quality=large_quality) for name, o in outcomes.items()},
        "curves": curves(replay, cascade=cascade),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "policies.json").write_text(json.dumps(report, indent=2, default=_plain) + "\n")
    plot(report, path=out / "policies.png")
    return report


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def format_table(report: dict[str, Any]) -> str:
    head = f"{'policy':10}" + "".join(f"{title:>10}" for _, title, _ in _COLUMNS)
    rows = [
        f"{name:10}" + "".join(f"{fmt.format(m[key]):>10}" for key, _, fmt in _COLUMNS)
        for name, m in report["policies"].items()
    ]
    lat = report["latency_model"]
    note = (
        f"{report['n_prompts']} prompts; router {lat['router_ms_median']:.3f} ms, confidence "
        f"{lat['confidence_ms_median']:.3f} ms (medians, in-process); small {lat['small_tokens_per_s']:g} tok/s, "
        f"second opinion {lat['second_tokens_per_s']:g} tok/s (assumed)"
    )
    return "\n".join([head, *rows, note])


def format_expected(expected: dict[str, dict[str, float]]) -> str:
    return "\n".join(
        f"  {key:22} {fmt.format(expected[key]['value']):>9}  "
        f"[{fmt.format(expected[key]['low'])}, {fmt.format(expected[key]['high'])}]"
        for key, _, fmt in _COLUMNS
        if key in expected
    )


def plot(report: dict[str, Any], *, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, c in report["curves"].items():
        order = np.argsort(c["cost_per_1k_usd"], kind="stable")
        xs, ys = np.asarray(c["cost_per_1k_usd"])[order], np.asarray(c["quality"])[order]
        ax.plot(xs, ys, marker=".", linestyle="-" if name.startswith("cascade") else "--", label=name)
    for name, m in report["policies"].items():
        ax.scatter([m["cost_per_1k_usd"]], [m["quality"]], s=40, zorder=3)
        ax.annotate(name, (m["cost_per_1k_usd"], m["quality"]), textcoords="offset points", xytext=(5, -10))
    ax.axhline(0.95 * report["large_quality"], color="grey", linewidth=0.8, label="95% of large")
    ax.set(xlabel="USD per 1,000 requests", ylabel="mean quality of returned answers", title="policies (replay)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
