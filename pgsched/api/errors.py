"""Errors as JSON: ``{"error": {"code", "message", "field"}}`` with the right status, never a 500 for bad input.

Interface layer: maps pgsched exceptions to HTTP answers; owns no business rules. An
unexpected exception is logged (without request bodies or headers) and answered with a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pgsched.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidStateError,
    JobNotFound,
    ScheduleNotFound,
    TaskNotFound,
    ValidationError,
    WorkflowNotFound,
)
from pgsched.retention import RetentionNotFound
from pgsched.token_store import TokenNotFound

__all__ = ["ApiError", "error_body", "error_response", "exception_handlers"]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer to send as a JSON error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status, headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return error_response(ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})))


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return error_response(ApiError(422, "invalid", exc.message, field=exc.field))


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(404, "not_found", str(exc)))


async def _conflict(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(409, "conflict", str(exc)))


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "database unavailable", extra={"event": "api_db_unavailable", "path": request.url.path, "error": str(exc)}
    )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return error_response(
        ApiError(503, "database_unavailable", "the database is unreachable or did not answer in time", headers=headers)
    )


async def _config(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(503, "misconfigured", str(exc)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"event": "api_error", "path": request.url.path, "method": request.method})
    return error_response(ApiError(500, "internal", "internal server error"))


def exception_handlers() -> dict[Any, Any]:
    return {
        ApiError: _api_error,
        HTTPException: _http_error,
        ValidationError: _validation,
        JobNotFound: _not_found,
        ScheduleNotFound: _not_found,
        TaskNotFound: _not_found,
        TokenNotFound: _not_found,
        RetentionNotFound: _not_found,
        WorkflowNotFound: _not_found,
        InvalidStateError: _conflict,
        DatabaseUnavailable: _unavailable,
        ConfigurationError: _config,
        Exception: _unexpected,
    }
