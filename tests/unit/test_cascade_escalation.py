"""Answer-level escalation without sockets: samples, second opinions, calibrated thresholds, budgets, retraction."""

from __future__ import annotations

import pytest

from classifier.policy import CalibratedPolicy, save_policy
from services.core.calibration import CalibrationFile
from services.core.errors import Overloaded
from services.gateway import wire
from services.gateway.domain import Reason
from tests.unit.cascade_fakes import Answer, Router, Tiers, make, request, run, settings, shown, words

A, B = "The answer is (A).", "The answer is (B)."


def three(small=A, second=A, large=B, *, samples=(), fail=(), small_prob=0.9) -> Tiers:
    return Tiers(
        {
            "small": Answer(words(small), small_prob, samples=samples),
            "second": Answer(words(second)),
            "large": Answer(words(large)),
        },
        fail=set(fail),
    )


def second_opinion(mode: str, **extra) -> dict:
    return {"second_opinion": {"tier": "second", "mode": mode, **extra}}


# --- self-consistency ---------------------------------------------------------------------------


async def test_samples_are_asked_for_at_the_sampling_temperature_and_the_majority_is_returned():
    t = three(small=B, samples=(A, A))  # streamed B, samples A, A: the vote says A
    cascade, _ = make(Router("small"), t, confidence="agreement", escalation={"samples": 3, "sample_temperature": 0.8})
    chunks, record = await run(cascade, request())
    _, call = t.calls[0]
    assert call.n == 3 and call.temperature == pytest.approx(0.8)
    assert shown(chunks) == A and record.answer.text == A
    route = record.route
    assert route.samples == 3 and route.reason == Reason.CONFIDENT
    # others are the streamed B and the other A: agreement 1/2 is the confidence of the agreement model.
    assert route.agreement == pytest.approx(0.5) and route.confidence == pytest.approx(0.5)
    assert record.usage().input_tokens == 300  # the tier's usage covers every sample


async def test_disagreeing_samples_escalate_with_reason_disagreement():
    cascade, _ = make(
        Router("small"), three(samples=(B, "The answer is (C).")), confidence="agreement", escalation={"samples": 3}
    )
    chunks, record = await run(cascade, request())
    assert record.route.escalated and record.route.reason == Reason.DISAGREEMENT and shown(chunks) == B
    assert record.route.agreement == 0.0


async def test_a_tier_that_ignores_n_answers_once_and_the_cascade_goes_on():
    cascade, _ = make(Router("small"), three(), confidence="agreement", escalation={"samples": 4})
    _, record = await run(cascade, request())
    assert record.route.samples == 1 and record.route.agreement is None
    assert record.route.confidence == 0.5 and record.route.reason == Reason.CONFIDENT  # no signal: 0.5 >= 0.5


# --- second opinion -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "escalated", "reason"), [(A, False, Reason.CONFIDENT), (B, True, Reason.DISAGREEMENT)]
)
async def test_parallel_second_opinion_decides_and_is_never_returned(second, escalated, reason):
    t = three(second=second)
    cascade, sink = make(Router("small"), t, confidence="agreement", escalation=second_opinion("parallel"))
    chunks, record = await run(cascade, request())
    assert sorted(t.asked) == sorted(["small", "second"] + (["large"] if escalated else []))
    assert record.route.escalated == escalated and record.route.reason == reason
    assert record.route.second_opinion_tier == "second" and record.route.tier != "second"
    assert shown(chunks) == (B if escalated else A)
    event = wire.outcome(sink[0], store_prompt_text=False)
    purposes = {a.purpose: a for a in event.attempts}
    assert purposes["second_opinion"].tier == "second" and purposes["second_opinion"].cost_usd > 0
    assert event.cost_usd == pytest.approx(sum(a.cost_usd for a in event.attempts))
    assert "second" not in event.route.tiers_tried


@pytest.mark.parametrize(("small_prob", "asked"), [(0.6, True), (0.95, False), (0.2, False)])
async def test_when_unsure_asks_only_inside_the_band(small_prob, asked):
    t = three(second=B, small_prob=small_prob)
    esc = {"min_confidence": 0.5, **second_opinion("when_unsure", unsure_low=0.4, unsure_high=0.8)}
    cascade, _ = make(Router("small"), t, confidence="logprob", escalation=esc)
    _, record = await run(cascade, request())
    assert ("second" in t.asked) == asked
    assert record.route.second_opinion_tier == ("second" if asked else "")


async def test_failed_second_opinion_is_recorded_and_ignored():
    cascade, sink = make(
        Router("small"), three(fail={"second"}), confidence="agreement", escalation=second_opinion("parallel")
    )
    _, record = await run(cascade, request())
    assert record.route.reason == Reason.CONFIDENT and not record.route.escalated  # decided without it
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert [a.error.code != 0 for a in event.attempts if a.purpose == "second_opinion"] == [True]
    assert not event.HasField("error")


async def test_mode_never_asks_no_second_opinion():
    t = three(second=B)
    cascade, _ = make(Router("small"), t, confidence="agreement", escalation=second_opinion("never"))
    await run(cascade, request())
    assert t.asked == ["small"]


# --- calibrated policy file ---------------------------------------------------------------------


def policy_file(tmp_path, **values):
    path = tmp_path / "policy.json"
    save_policy(CalibratedPolicy(**{"router_threshold": 0.5, "escalation_threshold": 0.5, **values}), path)
    return path


async def test_calibration_file_threshold_and_mode_win_over_the_config(tmp_path):
    path = policy_file(tmp_path, escalation_threshold=0.95, second_opinion="parallel")
    t = three(small_prob=0.9)
    esc = {"min_confidence": 0.1, "calibration": path, **second_opinion("never")}
    cal = CalibrationFile(path, interval_s=0)
    cascade, _ = make(Router("small"), t, calibration=cal, escalation=esc)
    _, record = await run(cascade, request())
    assert record.route.confidence_threshold == 0.95 and record.route.escalated
    assert "second" in t.asked


async def test_calibration_file_is_reread_when_it_changes_and_a_bad_one_is_ignored(tmp_path):
    path = policy_file(tmp_path, escalation_threshold=0.95)
    now = [0.0]
    cal = CalibrationFile(path, interval_s=10, clock=lambda: now[0])
    cascade, _ = make(Router("small"), three(), calibration=cal)
    assert (await run(cascade, request()))[1].route.escalated
    policy_file(tmp_path, escalation_threshold=0.1, created="later")
    assert (await run(cascade, request()))[1].route.escalated  # not checked again before the interval
    now[0] = 11
    assert not (await run(cascade, request()))[1].route.escalated
    path.write_text("{not json")
    now[0] = 22
    _, record = await run(cascade, request())
    assert record.route.confidence_threshold == 0.1  # the previous values are kept


def test_a_bad_calibration_file_fails_at_start(tmp_path):
    from services.core.errors import ModelError

    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(ModelError):
        CalibrationFile(tmp_path / "p.json", interval_s=0)


def test_router_threshold_comes_from_the_calibration_file(tmp_path):
    from services.core.settings import RouterSettings
    from services.router.policy import ModelHolder, ThresholdPolicy

    cal = CalibrationFile(policy_file(tmp_path, router_threshold=0.77), interval_s=0)
    policy = ThresholdPolicy(holder=ModelHolder(), settings=RouterSettings(threshold=0.2), calibration=cal)
    assert policy.threshold() == 0.77


# --- budgets ------------------------------------------------------------------------------------


def budget(**b) -> dict:
    return {"budgets": {"*": {"window_s": 60, **b}}}


async def test_share_budget_sends_an_escalation_to_the_small_answer_with_reason_budget():
    now = [0.0]
    cascade, _ = make(Router("small"), three(small_prob=0.1), clock=lambda: now[0], gateway=budget(max_large_share=0.5))
    first = (await run(cascade, request()))[1]
    assert first.route.escalated and not first.route.budget_limited
    chunks, second = await run(cascade, request())  # 1 of 1 used large: the share is spent
    assert second.route.tier == "small" and second.route.reason == Reason.BUDGET and second.route.budget_limited
    assert shown(chunks) == A
    now[0] = 61  # the window moved on
    assert (await run(cascade, request()))[1].route.escalated


async def test_usd_budget_keeps_routed_large_requests_on_the_small_tier_per_tenant():
    cascade, _ = make(Router("large"), three(), clock=lambda: 0.0, gateway=budget(max_large_usd=0.0005))
    assert (await run(cascade, request(tenant="a")))[1].route.tier == "large"  # 0.00104 USD spent
    limited = (await run(cascade, request(tenant="a")))[1]
    assert limited.route.tier == "small" and limited.route.reason == Reason.BUDGET
    assert (await run(cascade, request(tenant="b")))[1].route.tier == "large"  # b has its own budget


async def test_budget_can_fail_the_request_with_a_message_naming_it():
    gw = {"budgets": {"team-x": {"max_large_share": 0.0, "on_exceeded": "fail"}}}
    cascade, _ = make(Router("large"), three(), clock=lambda: 0.0, gateway=gw)
    with pytest.raises(Overloaded, match="team-x.*max_large_share"):
        await run(cascade, request(tenant="team-x"))
    assert (await run(cascade, request(tenant="other")))[1].route.tier == "large"  # no budget for others


async def test_policy_large_is_not_budget_limited():
    cascade, _ = make(Router("small"), t := three(), clock=lambda: 0.0, gateway=budget(max_large_share=0.0))
    _, record = await run(cascade, request("large"))
    assert t.asked == ["large"] and record.route.reason == Reason.POLICY


# --- speculative streams ------------------------------------------------------------------------


async def test_speculative_stream_shows_the_small_answer_then_retracts_it():
    cascade, _ = make(Router("small"), three(small_prob=0.1))
    chunks, record = await run(cascade, request(speculative=True))
    tiers_and_retracts = [(c.tier, c.retract) for c in chunks]
    assert tiers_and_retracts == [
        ("small", False),
        ("small", False),
        ("large", True),
        ("large", False),
        ("large", False),
    ]
    assert chunks[2].text == "" and shown(chunks) == B and record.route.escalated


async def test_speculative_stream_of_a_kept_answer_has_no_retraction():
    cascade, _ = make(Router("small"), three(small_prob=0.9))
    chunks, _ = await run(cascade, request(speculative=True))
    assert not any(c.retract for c in chunks) and shown(chunks) == A


async def test_speculative_stream_retracts_when_the_vote_picks_another_sample():
    t = three(small=B, samples=(A, A))
    cascade, _ = make(Router("small"), t, confidence="agreement", escalation={"samples": 3})
    chunks, record = await run(cascade, request(speculative=True))
    assert [c.retract for c in chunks] == [False, False, True, False] and shown(chunks) == A
    assert not record.route.escalated


# --- start-up checks ----------------------------------------------------------------------------


def test_second_opinion_tier_must_be_configured():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="nope"):
        settings(escalation={"second_opinion": {"tier": "nope"}})


async def test_gateway_refuses_to_start_with_a_confidence_model_it_cannot_load(tmp_path):
    from nats.aio.client import Client as NatsClient

    from services.core.errors import ConfigError, ModelError
    from services.gateway.server import GatewayService

    missing = {"confidence": "logprob", "calibration": tmp_path / "missing.json"}
    for bad, error in [({"confidence": "nope"}, ConfigError), (missing, ModelError)]:
        gateway = GatewayService(nc=NatsClient(), settings=settings(escalation=bad))
        with pytest.raises(error):
            await gateway.start()  # before it touches NATS
