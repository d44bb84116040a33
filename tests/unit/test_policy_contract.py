"""The applied policy is an enum in RouteSummary (beside the deprecated lowercase string), both ways."""

from __future__ import annotations

import pytest

from cascade.v1 import cascade_pb2, common_pb2
from services.gateway import wire
from services.sdk import _convert
from tests.unit.cascade_fakes import Answer, Router, Tiers, make, request, run


@pytest.mark.parametrize(
    ("policy", "value"),
    [
        ("cascade", common_pb2.POLICY_CASCADE),
        ("route", common_pb2.POLICY_ROUTE),
        ("small", common_pb2.POLICY_SMALL),
        ("large", common_pb2.POLICY_LARGE),
    ],
)
async def test_outcome_and_summary_carry_the_policy_as_enum_and_as_string(policy, value):
    answers = {"small": Answer(("s",), 0.9), "large": Answer(("l",), 0.9)}
    cascade, sink = make(Router("small"), Tiers(answers))
    await run(cascade, request(policy))
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert event.route.applied_policy == value
    assert event.route.policy == event.policy == policy  # the deprecated strings, still filled
    assert _convert.route_from_wire(event.route).policy == policy


def test_the_sdk_reads_the_enum_before_the_string():
    route = common_pb2.RouteSummary(policy="stale", applied_policy=common_pb2.POLICY_ROUTE)
    assert _convert.route_from_wire(route).policy == "route"


def test_the_sdk_still_reads_an_older_gateways_string():
    assert _convert.route_from_wire(common_pb2.RouteSummary(policy="large")).policy == "large"


def test_the_policy_enum_keeps_its_name_and_numbers_after_moving_to_common_proto():
    # Moved from cascade.proto to common.proto (public import): old code and old bytes still work.
    assert cascade_pb2.Policy is common_pb2.Policy
    assert common_pb2.Policy.DESCRIPTOR.full_name == "cascade.v1.Policy"
    assert [(v.name, v.number) for v in common_pb2.Policy.DESCRIPTOR.values] == [
        ("POLICY_UNSPECIFIED", 0),
        ("POLICY_CASCADE", 1),
        ("POLICY_AUTO", 1),
        ("POLICY_SMALL", 2),
        ("POLICY_LARGE", 3),
        ("POLICY_ROUTE", 4),
    ]
    old_bytes = bytes([0x30, 0x04])  # GenerateRequest field 6 (policy) = 4, as written before the move
    assert cascade_pb2.GenerateRequest.FromString(old_bytes).policy == cascade_pb2.POLICY_ROUTE
