"""The HTTP face: the JSON API under /v1 (OpenAPI at /openapi.json) and the link pages.

`create_app` builds a stand-alone application; the daemon can instead call `install` on its own
FastAPI application, next to /healthz and /metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from syncd import __version__
from syncd.api import (
    oauth_google,
    pages,
    routes_bookings,
    routes_catalog,
    routes_mentor,
    routes_people,
)
from syncd.api.auth import AuthError
from syncd.api.context import ApiContext
from syncd.api.schemas import ErrorBody
from syncd.api.settings import ApiSettings
from syncd.api.ssrf import UnsafeUrl
from syncd.booking import BookingService
from syncd.errors import BookingRefused, NotFoundError, UserError
from syncd.secrets import SecretKeyMissing
from syncd.store.db import Database

log = logging.getLogger(__name__)

API_PREFIX = "/v1"
_ERROR = {"model": ErrorBody}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "Malformed request"},
    401: {**_ERROR, "description": "No or unknown API key / link token"},
    403: {**_ERROR, "description": "Not allowed for this key or link"},
    404: {**_ERROR, "description": "Unknown id"},
    409: {**_ERROR, "description": "Refused: `error` is the reason code (e.g. slot_unavailable)"},
    422: {**_ERROR, "description": "Invalid input (unknown zone, naive time, range too long...)"},
    503: {**_ERROR, "description": "The server lacks configuration for this (e.g. a secret key)"},
}


def create_router() -> APIRouter:
    """Every /v1 route. Needs `install` (or `create_app`) for its state and error handlers."""
    router = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
    for module in (routes_catalog, routes_bookings, routes_people, routes_mentor):
        router.include_router(module.router)
    return router


def install(
    app: FastAPI, db: Database, settings: ApiSettings, *, bookings: BookingService | None = None
) -> None:
    """Add the API and the pages to `app`, sharing `db`."""
    app.state.syncd = ApiContext(db=db, settings=settings, bookings=bookings or BookingService(db))
    app.include_router(create_router())
    pages.install(app)
    oauth_google.install(app)
    install_error_handlers(app)


def create_app(
    db: Database, settings: ApiSettings, *, bookings: BookingService | None = None
) -> FastAPI:
    app = FastAPI(
        title="syncd",
        version=__version__,
        description="Booking API for 1-on-1 mentoring. Authenticate with `Authorization: Bearer <key>`.",
    )
    install(app, db, settings, bookings=bookings)
    return app


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _describe_validation(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """syncd's errors become `{"error": code, "message": ...}` with a fitting status."""

    @app.exception_handler(AuthError)
    async def _auth(request: Request, error: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return _error(error.status, error.code, str(error), headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # e.g. a body that is not JSON (400), an unknown path (404), a wrong method (405)
        code = _HTTP_CODES.get(error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _describe_validation(error))

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, error: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(error))

    @app.exception_handler(BookingRefused)
    async def _refused(request: Request, error: BookingRefused) -> JSONResponse:
        return _error(409, error.reason, str(error))

    @app.exception_handler(UnsafeUrl)
    async def _unsafe_url(request: Request, error: UnsafeUrl) -> JSONResponse:
        return _error(422, "url_refused", str(error))

    @app.exception_handler(SecretKeyMissing)
    async def _no_key(request: Request, error: SecretKeyMissing) -> JSONResponse:
        log.error("api: %s", error)
        return _error(
            503, "not_configured", "the server has no key to store credentials; ask the admin"
        )

    # Also catches the engine's AvailabilityError, a UserError.
    @app.exception_handler(UserError)
    async def _user_error(request: Request, error: UserError) -> JSONResponse:
        return _error(422, "invalid_request", str(error))
