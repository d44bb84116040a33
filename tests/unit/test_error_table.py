"""Every code of cascade.v1.ErrorCode maps in every consumer of the one error table.

The interceptor and SDK ends are checked over a real gRPC call in tests/integration/test_interceptor.py.
"""

from __future__ import annotations

import grpc
import pytest

from cascade.v1 import events_pb2
from services.core.errors import ErrorCode, InternalError, error_class, error_for_code
from services.core.status import error_code, grpc_status
from services.http.errors import INTERNAL, ApiError

PROTO_CODES = [(name.removeprefix("ERROR_CODE_"), number) for name, number in events_pb2.ErrorCode.items()]
ERRORS = [name for name, number in PROTO_CODES if number]  # UNSPECIFIED is no error


def test_error_code_mirrors_the_proto() -> None:
    assert [(c.name, c.value) for c in ErrorCode] == PROTO_CODES


@pytest.mark.parametrize("name", ERRORS)
def test_each_code_has_its_status_and_exception(name: str) -> None:
    code = ErrorCode[name]
    assert grpc_status(code) is grpc.StatusCode[name] and error_code(grpc.StatusCode[name]) is code
    assert error_class(code).code is code
    decoded = error_for_code(code.value, "from the wire")  # what tier workers put in ErrorInfo
    assert type(decoded) is error_class(code) and decoded.message == "from the wire"


@pytest.mark.parametrize("name", ERRORS)
def test_each_code_has_its_http_status(name: str) -> None:
    http = ApiError.from_cascade(error_class(ErrorCode[name])("x")).http
    assert (http == INTERNAL) == (name == "INTERNAL"), http


def test_statuses_no_code_names_are_internal() -> None:
    for status in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DATA_LOSS):
        assert error_code(status) is ErrorCode.INTERNAL
    assert grpc_status(ErrorCode.UNSPECIFIED) is grpc.StatusCode.INTERNAL
    assert type(error_for_code(999, "?")) is InternalError
