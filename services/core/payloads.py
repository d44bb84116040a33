"""Decoding NATS payloads: a size limit first, then protobuf, and a project error naming the cause for either.

Every NATS handler and client decodes through here, so a payload from a buggy or hostile publisher
is refused the same way everywhere (and ``bench/fuzz.py`` has one contract to check).
"""

from __future__ import annotations

import re
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from services.core.errors import InvalidRequest, Overloaded

# nats.max_payload_bytes's default: the largest payload nats-server advises (its own default is 1 MiB).
DEFAULT_MAX_PAYLOAD = 8 << 20
# A subject a reply may be published on: dot-separated tokens with no wildcard, space or control
# character (one in a subject would be read by nats-server as part of the protocol line).
_INBOX = re.compile(r"_INBOX(\.[A-Za-z0-9_-]+)+")

M = TypeVar("M", bound=Message)


def check_size(what: str, data: bytes, *, limit: int) -> None:
    """Raise Overloaded when ``data`` is larger than ``limit`` bytes."""
    if len(data) > limit:
        raise Overloaded(f"{what} of {len(data)} bytes is over the limit of {limit} (nats.max_payload_bytes)")


def decode(kind: type[M], data: bytes, *, limit: int = DEFAULT_MAX_PAYLOAD) -> M:
    """``data`` as a ``kind``: Overloaded when over ``limit`` bytes, InvalidRequest when malformed."""
    name = kind.DESCRIPTOR.name
    check_size(name, data, limit=limit)
    try:
        return kind.FromString(data)
    except DecodeError:
        raise InvalidRequest(f"malformed {name} ({len(data)} bytes)") from None


def is_inbox(subject: str) -> bool:
    """Whether ``subject`` is a plain ``_INBOX.`` subject, safe to publish replies on."""
    return len(subject) <= 256 and _INBOX.fullmatch(subject) is not None
