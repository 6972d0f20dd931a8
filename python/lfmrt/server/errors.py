"""OpenAI-style errors: every failure a client can cause is a 4xx with
``{"error": {"message", "type", "param", "code"}}``, never a 500 or a dropped connection."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Sequence, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("lfmrt.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
          503: "server_error"}


class APIError(Exception):
    """An error answered to the client as OpenAI does.

    Args:
        status: the HTTP status.
        message: what is wrong, naming the field.
        param: the request field at fault (``"messages.2.content"``), if one is.
        code: a machine-readable code (``"invalid_api_key"``, ``"model_not_found"``, ...).
        type: OpenAI's error type (default: from the status).
    """

    def __init__(self, status: int, message: str, *, param: Optional[str] = None, code: Optional[str] = None,
                 type: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")

    def body(self) -> Dict[str, Any]:
        """The JSON body: ``{"error": {...}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def field_path(location: Sequence[Union[str, int]]) -> Optional[str]:
    """A pydantic error location as the dotted field name OpenAI reports (``"messages.0.role"``);
    ``None`` for the body as a whole."""
    parts = [str(part) for part in location if part != "body"]
    return ".".join(parts) or None


def _validation_error(error: RequestValidationError) -> APIError:
    """The first problem pydantic found, as a 400 naming its field."""
    problems = error.errors()
    if not problems:
        return APIError(400, "invalid request body")
    first = problems[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON: {detail}".rstrip(": "), code="invalid_json")
    param = field_path(first.get("loc", ()))
    if first.get("type") == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter")
    if first.get("type") == "missing" and param is None:
        return APIError(400, "the request needs a JSON body", code="missing_body")
    message = first.get("msg", "invalid value")
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    return APIError(400, f"{param or 'body'}: {message}{more}", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Answers validation errors, HTTP errors (404, 405, ...) and :class:`APIError` with OpenAI's
    error object; anything else (a bug) is logged and answered as a 500 error object."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_error(error).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message, code = f"no route {request.method} {request.url.path}", "unknown_url"
        elif error.status_code == 405:
            message, code = f"{request.url.path} does not take {request.method}", "method_not_allowed"
        else:
            message, code = str(error.detail), None
        return APIError(error.status_code, message, code=code).response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return APIError(500, f"internal error: {type(error).__name__}", type="server_error").response()
