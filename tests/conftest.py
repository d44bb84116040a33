"""Fixtures shared by every test: real servers, started on free ports and always stopped."""

from tests.support.fixtures import fake_openai, fake_openai_server
from tests.support.nats import nats_server
from tests.support.tls import self_signed

__all__ = ["fake_openai", "fake_openai_server", "nats_server", "self_signed"]
