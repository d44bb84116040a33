"""outcomes.redact / redact_hook: the built-in patterns, custom ones, the hook, and where they apply."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types

import pytest

from services.core.errors import ConfigError, Unavailable
from services.core.settings import OutcomeSettings, load_settings
from services.gateway import wire
from services.gateway.domain import Piece, Purpose
from services.gateway.record import RequestRecord
from services.gateway.redact import Redactor
from tests.unit.cascade_fakes import request, settings


def redactor(*rules, hook=None) -> Redactor:
    return Redactor.from_settings(OutcomeSettings(redact=rules, redact_hook=hook))


@pytest.mark.parametrize(
    ("rule", "text", "expected"),
    [
        ("email", "write to ann.lee+x@mail.example.co.uk today", "write to [email] today"),
        ("email", "a@b is no address", "a@b is no address"),
        ("number", "pay 1,250.50 by day 3", "pay [number] by day [number]"),
        ("phone", "call +1 (555) 010-0199 now", "call [phone] now"),
        ("phone", "the year 2024 and 42", "the year 2024 and 42"),
        ("ipv4", "host 10.0.0.17 is down", "host [ip] is down"),
    ],
)
def test_a_built_in_pattern_replaces_what_it_names_and_nothing_else(rule, text, expected):
    assert redactor(rule)(text) == expected


def test_patterns_apply_in_order():
    # phone first keeps the number whole; number first leaves the phone pattern nothing to find
    assert redactor("phone", "number")("call 555-010-0199 at 9") == "call [phone] at [number]"
    assert redactor("number", "phone")("call 555-010-0199 at 9") == "call [number]-[number]-[number] at [number]"


def test_a_custom_pattern_with_groups():
    r = redactor({"pattern": r"(?i)\bname: (\w+)", "replacement": r"name: [\1 hidden]"}, "email")
    assert r("Name: Bob, bob@x.org") == "name: [Bob hidden], [email]"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("passport", "unknown pattern 'passport'"),
        ({"pattern": "a(b"}, "bad regular expression 'a(b'"),
        ({"pattern": "ab", "replacement": r"\2"}, "bad regular expression 'ab'"),
    ],
)
def test_a_bad_rule_is_a_config_error_at_load(tmp_path, rule, message):
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"outcomes": {"redact": [rule]}}))
    with pytest.raises(ConfigError, match="outcomes.redact") as info:
        load_settings(path)
    assert message in str(info.value)


@pytest.fixture
def hook_module(monkeypatch):
    mod = types.ModuleType("redact_hooks_for_test")
    mod.upper = str.upper  # type: ignore[attr-defined]
    mod.broken = lambda text: 1 / 0  # type: ignore[attr-defined]
    mod.not_str = lambda text: None  # type: ignore[attr-defined]
    mod.later = lambda text: text if text.startswith("probe") else 1 / 0  # type: ignore[attr-defined]
    mod.value = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod.__name__


def test_the_hook_runs_after_the_patterns(hook_module):
    assert redactor("email", hook=f"{hook_module}:upper")("mail me: a@b.io") == "MAIL ME: [EMAIL]"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "cannot be loaded"),
        ("value", "is not callable"),
        ("broken", "fails on a probe text"),
        ("not_str", "returns NoneType, not a str"),
    ],
)
def test_a_hook_that_cannot_serve_fails_at_start(hook_module, name, message):
    with pytest.raises(ConfigError, match=message):
        redactor(hook=f"{hook_module}:{name}")


def test_a_hook_module_that_does_not_exist_fails_at_start():
    with pytest.raises(ConfigError, match="cannot be loaded"):
        redactor(hook="no_such_module_here:f")


def test_a_hook_failing_later_drops_the_text_rather_than_leaking_it(hook_module):
    assert redactor(hook=f"{hook_module}:later")("secret a@b.io") == ""


def test_every_stored_text_is_redacted_and_the_hash_is_of_the_routed_text():
    s = settings()
    req = request(text="I am ann@x.org, 42 years")
    record = RequestRecord(request=req, prices={n: t.price for n, t in s.tiers.items()}, large_tier="large")
    for tier, purpose, text, samples in [
        ("small", Purpose.ANSWER, "hi ann@x.org", ("mail ann@x.org", "no")),
        ("large", Purpose.ESCALATION, "Dear ann@x.org, 42", ()),
    ]:
        attempt = record.begin(tier, purpose)
        attempt.add(Piece(text=text))
        attempt.add(Piece(final=True, finish_reason="stop", samples=samples))
        record.answered_by(attempt)
    event = wire.outcome(record, store_prompt_text=True, store_answer_text=True, redact=redactor("email", "number"))
    assert event.prompt_text == "I am [email], [number] years"
    assert [a.text for a in event.attempts] == ["hi [email]", "Dear [email], [number]"]
    assert list(event.attempts[0].sample_texts) == ["mail [email]", "no"]
    assert event.answer_text == "Dear [email], [number]"
    assert event.prompt_sha256 == hashlib.sha256(b"I am ann@x.org, 42 years").hexdigest()
    assert event.answer_chars == len("Dear ann@x.org, 42")


def test_the_readme_example_loads_and_redacts():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text[text.index("### Redaction") :], re.S)
    assert block
    outcomes = yaml.safe_load(block.group(1))["outcomes"]
    assert outcomes.pop("redact_hook") == "mycompany.pii:scrub"
    r = Redactor.from_settings(OutcomeSettings(**outcomes))
    assert r("Name: Ann, ann@x.org, +44 20 7946 0958, 3 cats") == "name: [name], [email], [phone], [number] cats"


@pytest.mark.parametrize("store_prompt_text", [False, True])
def test_the_provisional_outcome_is_the_outcome_of_a_request_that_did_nothing(store_prompt_text):
    """Held for every request from its start; built directly (it is on every request's path), so it must
    stay what ``outcome`` gives for an untouched record that failed, but for the time it was made."""
    s, error = settings(), Unavailable("the gateway stopped before the request finished (killed or crashed)")
    for policy in ("cascade", "route", "small", "large"):
        req = dataclasses.replace(request(policy, text="I am ann@x.org"), tags={"team": "a"})
        record = RequestRecord(request=req, prices={n: t.price for n, t in s.tiers.items()}, large_tier="large")
        record.error = error
        redact = redactor("email")
        whole = wire.outcome(record, store_prompt_text=store_prompt_text, redact=redact)
        direct = wire.provisional_outcome(req, error, store_prompt_text=store_prompt_text, redact=redact)
        for event in (whole, direct):
            event.ClearField("time")
            event.timings.total_ms = 0.0
        assert direct == whole
