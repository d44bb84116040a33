"""The one error table: ``cascade.v1.ErrorCode`` <-> :class:`ErrorCode` <-> gRPC status <-> exception.

The proto's enum is the source. :class:`ErrorCode` mirrors it (checked here), a code's gRPC status is
the status of the same name (``ERROR_CODE_NOT_FOUND`` is ``NOT_FOUND``), and its exception is
:func:`services.core.errors.error_class`. The gateway's interceptor, the SDK and the HTTP front door
all read this module, so a code added to the proto cannot leave one of them behind: an ErrorCode that
lacks it, a name that is no gRPC status or a code without an exception fails every import.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import grpc

from cascade.v1 import events_pb2
from services.core.errors import ErrorCode


def _check_mirrors_proto() -> None:
    proto = {name.removeprefix("ERROR_CODE_"): number for name, number in events_pb2.ErrorCode.items()}
    ours = {code.name: code.value for code in ErrorCode}
    if proto != ours:
        raise ImportError(f"services.core.errors.ErrorCode {ours} differs from cascade.v1.ErrorCode {proto}")


_check_mirrors_proto()

# UNSPECIFIED is no error a handler raises; should one carry it, the caller sees INTERNAL.
GRPC_STATUS: Mapping[ErrorCode, grpc.StatusCode] = MappingProxyType(
    {code: grpc.StatusCode[code.name] if code else grpc.StatusCode.INTERNAL for code in ErrorCode}
)
_CODE: Mapping[grpc.StatusCode, ErrorCode] = MappingProxyType({s: c for c, s in GRPC_STATUS.items() if c})


def grpc_status(code: ErrorCode) -> grpc.StatusCode:
    """The gRPC status a project error with ``code`` is reported as."""
    return GRPC_STATUS[code]


def error_code(status: grpc.StatusCode) -> ErrorCode:
    """The code of a gRPC status; statuses no code names (UNKNOWN, UNIMPLEMENTED, ...) are INTERNAL."""
    return _CODE.get(status, ErrorCode.INTERNAL)
