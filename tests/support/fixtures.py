"""Pytest fixtures for the fake OpenAI-compatible server (register them from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.openai_server import FakeOpenAI, start_fake_openai


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One server process for the whole session; use ``fake_openai`` in tests."""
    server = start_fake_openai()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def fake_openai(fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The session's server with no faults and a zeroed request counter."""
    await fake_openai_server.reset()
    return fake_openai_server
