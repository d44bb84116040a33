"""Redaction of the texts an outcome event stores (``outcomes.redact``, ``outcomes.redact_hook``).

Built once at gateway start from validated settings: the patterns are compiled there (a bad one
already failed validation) and the hook is imported and tried on a probe text, so a hook that
cannot be loaded, or that does not return a str, stops the gateway before it serves. Applied in
wire.outcome to the prompt text, every attempt's text and sample texts, and the answer text.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence

from services.core.errors import ConfigError
from services.core.settings import OutcomeSettings

log = logging.getLogger(__name__)

Hook = Callable[[str], str]


class Redactor:
    def __init__(self, rules: Sequence[tuple[re.Pattern[str], str]] = (), hook: Hook | None = None) -> None:
        self._rules, self._hook = tuple(rules), hook

    @classmethod
    def from_settings(cls, outcomes: OutcomeSettings) -> Redactor:
        hook = load_hook(outcomes.redact_hook) if outcomes.redact_hook else None
        return cls([rule.compiled() for rule in outcomes.redact], hook)

    def __bool__(self) -> bool:
        return bool(self._rules) or self._hook is not None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for pattern, replacement in self._rules:
            text = pattern.sub(replacement, text)
        if self._hook is None:
            return text
        try:
            out = self._hook(text)
        except Exception:  # a hook's bug must not lose the outcome; nor may it let the text through
            log.exception("outcomes.redact_hook failed: the text is left out of the outcome")
            return ""
        if not isinstance(out, str):
            log.error("outcomes.redact_hook returned %s, not a str: the text is left out", type(out).__name__)
            return ""
        return out


def load_hook(spec: str) -> Hook:
    """Import "package.module:function" and check it maps a str to a str; raises ConfigError."""
    module_name, _, name = spec.partition(":")
    try:
        hook = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"outcomes.redact_hook {spec!r} cannot be loaded: {exc}") from exc
    if not callable(hook):
        raise ConfigError(f"outcomes.redact_hook {spec!r} is not callable")
    try:
        probe = hook("probe: someone@example.com 555 0100")
    except Exception as exc:
        raise ConfigError(f"outcomes.redact_hook {spec!r} fails on a probe text: {exc!r}") from exc
    if not isinstance(probe, str):
        raise ConfigError(f"outcomes.redact_hook {spec!r} returns {type(probe).__name__}, not a str")
    return hook
