"""Conversions between the project's errors and their wire form (cascade.v1.ErrorInfo)."""

from __future__ import annotations

import time
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp

from cascade.v1 import common_pb2, events_pb2
from services.core.errors import CascadeError, error_for_code

FINISH_REASONS = {
    "stop": common_pb2.FINISH_REASON_STOP,
    "length": common_pb2.FINISH_REASON_LENGTH,
    "error": common_pb2.FINISH_REASON_ERROR,
}
FINISH_NAMES = {v: k for k, v in FINISH_REASONS.items()}


def error_info(exc: CascadeError) -> events_pb2.ErrorInfo:
    # The generated stubs type enum fields as the enum class; the values are the same ints.
    return events_pb2.ErrorInfo(code=cast("events_pb2.ErrorCode", int(exc.code)), message=exc.message)


def raise_if_error(info: events_pb2.ErrorInfo, *, has: bool) -> None:
    """Raise the project error an ErrorInfo stands for (``has``: the field is present)."""
    if has and info.code:
        raise error_for_code(info.code, info.message)


def now_timestamp() -> Timestamp:
    """The current time, for the ``time`` field of events."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos)  # GetCurrentTime goes through datetime: 3x slower
