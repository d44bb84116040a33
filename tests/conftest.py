"""Fixtures shared by every test: real servers, started on free ports and always stopped."""

from tests.support.nats import nats_server

__all__ = ["nats_server"]
