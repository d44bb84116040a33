"""Tier backends by name, chosen from configuration. Backends import their libraries lazily."""

from __future__ import annotations

from collections.abc import Callable

from services.core.errors import ConfigError
from services.core.settings import TierSettings
from services.tier.backends.base import Delta, Generation, Message, SampleAnswer, TierBackend

__all__ = ["BACKENDS", "Delta", "Generation", "Message", "SampleAnswer", "TierBackend", "create_backend"]


def _openai(settings: TierSettings) -> TierBackend:
    from services.tier.backends.openai import OpenAIBackend

    s = settings.openai
    assert s is not None  # guaranteed by TierSettings validation
    return OpenAIBackend(
        base_url=s.base_url,
        model=s.model,
        api_key=s.api_key.get_secret_value() if s.api_key else None,
        timeout_s=s.timeout_s,
        connect_timeout_s=s.connect_timeout_s,
        max_connections=s.max_connections,
    )


def _replay(settings: TierSettings) -> TierBackend:
    from services.tier.backends.replay import ReplayBackend

    s = settings.replay
    assert s is not None
    return ReplayBackend(data_path=s.data, model=s.model)


BACKENDS: dict[str, Callable[[TierSettings], TierBackend]] = {"openai": _openai, "replay": _replay}


def create_backend(settings: TierSettings) -> TierBackend:
    try:
        factory = BACKENDS[settings.backend]
    except KeyError:
        raise ConfigError(f"unknown tier backend {settings.backend!r}; known: {sorted(BACKENDS)}") from None
    return factory(settings)
