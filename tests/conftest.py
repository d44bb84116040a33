"""Fixtures shared by every test: real servers, started on free ports and always stopped."""

from tests.support import hypothesis_profiles  # noqa: F401 - registers and loads the profile
from tests.support.data import routing_data
from tests.support.fixtures import fake_openai, fake_openai_server
from tests.support.gpu import pytest_collection_modifyitems
from tests.support.nats import nats_server
from tests.support.tls import self_signed

__all__ = [
    "fake_openai",
    "fake_openai_server",
    "nats_server",
    "pytest_collection_modifyitems",
    "routing_data",
    "self_signed",
]
