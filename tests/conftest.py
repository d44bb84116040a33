"""Fixtures shared by every test: real servers, started on free ports and always stopped."""

from tests.support.fixtures import fake_openai, fake_openai_server
from tests.support.nats import nats_server

__all__ = ["fake_openai", "fake_openai_server", "nats_server"]
