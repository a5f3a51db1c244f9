"""The Starlette app: middleware (signed sessions, security headers), routes and error pages.

`create_app` takes a ready ConsoleState; `conveyor web` (cli/web.py) builds one and serves it.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import psycopg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor import metrics
from conveyor.errors import ConveyorError
from conveyor.web import sessions
from conveyor.web.pages import (
    approvals,
    components,
    dead_letters,
    jobs,
    overview,
    phases,
    queues,
    workflows,
)
from conveyor.web.sessions import safe_path
from conveyor.web.state import HERE, ConsoleState, flash

log = logging.getLogger(__name__)

SESSION_SECONDS = 8 * 3600
# Everything the pages load comes from this server; no frame may embed them.
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Add the headers above to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class ServerTiming:
    """Say in a `Server-Timing` header how long the server took (queries and rendering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                header = (b"server-timing", f"app;dur={took:.1f}".encode())
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, timed)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers)


async def _conveyor_error(request: Request, error: Exception) -> Response:
    # A refusal or bad input from a SQL function, in the database's own words: after an action,
    # on the page the operator came from; otherwise as one line.
    if request.method != "POST":
        return PlainTextResponse(f"Error: {error}", status_code=409)
    flash(request, f"Not done: {error}", "error")
    referer = urlsplit(request.headers.get("referer", ""))
    back = referer.path + (f"?{referer.query}" if referer.query else "")
    return RedirectResponse(safe_path(back), status_code=303)


async def _database_down(request: Request, error: Exception) -> Response:
    log.warning("console: database error: %s", error)
    return PlainTextResponse(
        "Error: the database cannot be reached right now; the page works again once it is up",
        status_code=503,
    )


def routes() -> list[BaseRoute]:
    """Every route of the console."""
    return [
        *sessions.routes,
        *overview.routes,
        *queues.routes,
        *jobs.routes,
        *workflows.routes,
        *approvals.routes,
        *dead_letters.routes,
        *components.routes,
        *phases.routes,
        *metrics.routes,
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]


def create_app(console: ConsoleState) -> Starlette:
    """The console app over *console* (its pool must be open)."""
    middleware = [
        Middleware(ServerTiming),
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=console.secret,
            session_cookie="conveyor_session",
            max_age=SESSION_SECONDS,
            same_site="strict",
            https_only=console.tls,
        ),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        ConveyorError: _conveyor_error,
        psycopg.OperationalError: _database_down,
    }
    app = Starlette(routes=routes(), middleware=middleware, exception_handlers=handlers)
    app.state.console = console
    return app
