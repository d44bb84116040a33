"""Exploration: which requests, the caps, shadow answers in the outcome, routing against the decision."""

from __future__ import annotations

import dataclasses

import pytest

from services.core.errors import ErrorCode
from services.core.settings import ExplorationSettings
from services.gateway import wire
from services.gateway.domain import Purpose, Reason
from services.gateway.explore import Exploration
from tests.unit.cascade_fakes import PRICES, Answer, Router, Tiers, make, request, run

SMALL, LARGE = Answer(("small answer",), prob=0.99), Answer(("large answer",))


def req(request_id: str = "r1", policy: str = "cascade", **kw):
    return dataclasses.replace(request(policy, **kw), request_id=request_id)


def cost(tier: str) -> float:
    i, o = PRICES[tier]  # the fake tiers' usage: 100 input and 2 output tokens an answer
    return (100 * i + 2 * o) / 1e6


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def explorer(clock=None, **over) -> Exploration:
    return Exploration(ExplorationSettings(**over), ladder=("small", "large"), tiers=Tiers({}), clock=clock or Clock())


def test_the_choice_is_a_hash_of_the_id_stable_and_about_the_share():
    e = explorer(share=0.2)
    ids = [f"req-{i}" for i in range(4000)]
    chosen = {i for i in ids if e.chosen(i)}
    assert 0.17 < len(chosen) / len(ids) < 0.23
    assert chosen == {i for i in ids if explorer(share=0.2).chosen(i)}  # another process, the same ids
    other_seed = {i for i in ids if explorer(share=0.2, seed="b").chosen(i)}
    assert other_seed != chosen and 0.17 < len(other_seed) / len(ids) < 0.23
    assert not any(explorer(share=0.0).chosen(i) for i in ids)
    assert all(explorer(share=1.0).chosen(i) for i in ids[:100])


async def test_a_shadow_answers_on_the_large_tier_after_the_small_answer_and_joins_the_outcome():
    tiers = Tiers({"small": SMALL, "large": LARGE})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0})
    chunks, record = await run(cascade, req())
    assert "".join(c.text for c in chunks) == "small answer" and record.route.tier == "small"
    await cascade.exploration.close(timeout_s=5)
    assert tiers.asked == ["small", "large"]
    (published,) = sink
    assert published.exploration == "shadow"
    assert [(a.tier, a.purpose, a.text) for a in published.attempts] == [
        ("small", Purpose.ANSWER, "small answer"),
        ("large", Purpose.SHADOW, "large answer"),
    ]
    assert published.answer is published.attempts[0]  # the shadow is never the answer
    assert published.route.tiers_tried == ["small"] and not published.route.escalated
    assert published.cost_usd() == pytest.approx(cost("small") + cost("large"))
    assert published.stage_ms()[1] == 0  # the shadow is no part of the request's latency
    event = wire.outcome(published, store_prompt_text=False, store_answer_text=True)
    assert event.exploration == "shadow" and event.route.tier == "small" and event.answer_text == "small answer"
    assert [(a.purpose, a.tier_rank, a.text) for a in event.attempts] == [
        ("answer", 0, "small answer"),
        ("shadow", 1, "large answer"),
    ]
    assert event.attempts[1].cost_usd == pytest.approx(cost("large"))
    assert event.cost_usd == pytest.approx(cost("small") + cost("large"))


async def test_a_request_answered_large_is_shadowed_by_the_small_tier():
    tiers = Tiers({"small": SMALL, "large": LARGE})
    cascade, sink = make(Router("large"), tiers, exploration={"share": 1.0})
    _, record = await run(cascade, req())
    await cascade.exploration.close(timeout_s=5)
    assert record.route.tier == "large"
    assert [(a.tier, a.purpose) for a in sink[0].attempts] == [("large", Purpose.ANSWER), ("small", Purpose.SHADOW)]


async def test_the_outcome_waits_for_the_shadow_and_the_caller_does_not():
    tiers = Tiers({"small": SMALL, "large": dataclasses.replace(LARGE, delay_s=0.2)})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0})
    _, record = await run(cascade, req())
    assert record is not None and sink == [] and cascade.exploration.running == 1
    await cascade.exploration.close(timeout_s=5)
    assert len(sink) == 1 and cascade.exploration.running == 0


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"fail": {"large"}}, ErrorCode.UNAVAILABLE),
        ({"answers": {"small": SMALL, "large": dataclasses.replace(LARGE, delay_s=5)}}, ErrorCode.DEADLINE_EXCEEDED),
    ],
)
async def test_a_failing_shadow_fails_nothing_and_its_outcome_is_still_recorded(fault, code):
    tiers = Tiers(**{"answers": {"small": SMALL, "large": LARGE}, **fault})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0, "shadow_timeout_s": 0.05})
    chunks, record = await run(cascade, req())
    assert "".join(c.text for c in chunks) == "small answer" and record.error is None
    await cascade.exploration.close(timeout_s=5)
    shadow = sink[0].attempts[-1]
    assert shadow.purpose == Purpose.SHADOW and shadow.error is not None and shadow.error.code == code


async def test_shutdown_cancels_a_late_shadow_and_still_publishes_its_outcome():
    tiers = Tiers({"small": SMALL, "large": dataclasses.replace(LARGE, delay_s=30)})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0})
    await run(cascade, req())
    await cascade.exploration.close(timeout_s=0.05)
    shadow = sink[0].attempts[-1]
    assert shadow.purpose == Purpose.SHADOW and shadow.error.code == ErrorCode.CANCELLED


async def test_not_explored_other_policies_unchosen_ids_and_escalated_requests():
    tiers = Tiers({"small": Answer(("unsure",), prob=0.05), "large": LARGE})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0})
    await run(cascade, req("a", policy="small"))
    await run(cascade, req("b", policy="large"))
    await run(cascade, req("c"))  # escalates: the large tier answered already
    assert sink[-1].route.escalated
    assert cascade.exploration.running == 0 and [r.exploration for r in sink] == ["", "", ""]
    cascade, sink = make(Router("small"), tiers, exploration={"share": 0.0})
    await run(cascade, req("d", policy="route"))
    assert cascade.exploration.running == 0 and sink[0].exploration == ""


async def test_against_sends_a_request_routed_small_to_the_large_tier():
    tiers = Tiers({"small": SMALL, "large": LARGE})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0, "mode": "against"})
    chunks, record = await run(cascade, req())
    assert "".join(c.text for c in chunks) == "large answer" and tiers.asked == ["large"]
    assert record.exploration == "against_decision" and record.route.reason == Reason.ROUTED_LARGE
    assert record.route.router_score == 0.3 and record.route.router_threshold == 0.5  # the decision it went against
    assert sink == [record]  # published at once: nothing runs after it


async def test_against_starts_a_request_routed_large_on_the_small_tier_which_may_escalate():
    tiers = Tiers({"small": Answer(("unsure",), prob=0.05), "large": LARGE})
    cascade, sink = make(Router("large"), tiers, exploration={"share": 1.0, "mode": "against"})
    _, record = await run(cascade, req())
    assert tiers.asked == ["small", "large"] and record.route.escalated
    assert record.exploration == "against_decision" and record.route.reason == Reason.LOW_CONFIDENCE


async def test_against_leaves_a_fallback_alone_and_the_tenant_budget_wins():
    tiers = Tiers({"small": SMALL, "large": LARGE})
    cascade, _ = make(Router(fail=True), tiers, exploration={"share": 1.0, "mode": "against"})
    _, record = await run(cascade, req())
    assert record.route.reason == Reason.ROUTER_FALLBACK and record.exploration == ""
    budgets = {"*": {"max_large_usd": 0.0}}
    cascade, _ = make(
        Router("small"), tiers, exploration={"share": 1.0, "mode": "against"}, gateway={"budgets": budgets}
    )
    _, record = await run(cascade, req())
    assert record.route.tier == "small" and record.route.budget_limited and record.exploration == ""


async def test_the_usd_cap_stops_exploring_until_the_hour_has_passed():
    clock = Clock()
    tiers = Tiers({"small": SMALL, "large": LARGE})
    cap = cost("large") * 1.5  # one shadow fits, a second one would not
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0, "max_usd_per_hour": cap})
    cascade.exploration = Exploration(cascade.settings.exploration, ladder=("small", "large"), tiers=tiers, clock=clock)
    for i in range(3):
        await run(cascade, req(f"r{i}"))
        await cascade.exploration.close(timeout_s=5)
        clock.now += 60
    assert [r.exploration for r in sink] == ["shadow", "shadow", ""]  # the second began below the cap
    clock.now = 3000  # within the hour of both shadows
    await run(cascade, req("still"))
    assert sink[-1].exploration == "" and cascade.exploration.running == 0
    clock.now = 3600  # the first shadow has left the window, the second not: one shadow spent, below the cap
    await run(cascade, req("later"))
    await cascade.exploration.close(timeout_s=5)
    assert sink[-1].exploration == "shadow"


async def test_the_share_cap_explores_at_most_that_share_of_the_hour():
    tiers = Tiers({"small": SMALL, "large": LARGE})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0, "mode": "against", "max_share": 0.25})
    for i in range(8):
        await run(cascade, req(f"r{i}"))
    explored = [r.exploration for r in sink]
    assert explored.count("against_decision") == 2 and explored[0] == "against_decision"


async def test_at_most_max_shadows_in_flight():
    tiers = Tiers({"small": SMALL, "large": dataclasses.replace(LARGE, delay_s=0.3)})
    cascade, sink = make(Router("small"), tiers, exploration={"share": 1.0, "max_shadows_in_flight": 2})
    for i in range(4):
        await run(cascade, req(f"r{i}"))
    assert cascade.exploration.running == 2
    await cascade.exploration.close(timeout_s=5)
    assert sorted(r.exploration for r in sink) == ["", "", "shadow", "shadow"]


def test_the_readme_example_is_valid_settings():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text[text.index("### Exploration") :], re.S)
    assert block
    s = ExplorationSettings(**yaml.safe_load(block.group(1))["exploration"])
    assert (s.share, s.mode, s.max_usd_per_hour) == (0.02, "shadow", 5.0)
