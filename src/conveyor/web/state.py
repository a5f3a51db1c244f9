"""What every page shares: the connection pool, the users, the templates, and `render`.

Pages read through `read(request, fn)`, which runs *fn* on a pooled connection in a thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from conveyor.calls import call
from conveyor.cli.context import applied_phases
from conveyor.types import JsonObject
from conveyor.web.users import User

T = TypeVar("T")
HERE = Path(__file__).parent
NAV = (
    ("overview", "/", "Overview"),
    ("queues", "/queues", "Queues"),
    ("jobs", "/jobs", "Jobs"),
    ("workflows", "/workflows", "Workflows"),
    ("dead_letters", "/dead-letters", "Dead letters"),
    ("components", "/components", "Components"),
    ("phases", "/phases", "Phases"),
)


def age(seconds: float | None) -> str:
    """*seconds* as a short duration: 42 s, 5 min 3 s, 3 h 12 min, 6 d 22 h."""
    if seconds is None:
        return "–"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{seconds:.0f} s"


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["age"] = age
    return templates


@dataclass(slots=True)
class ConsoleState:
    """The running console: its pool and users (read once at start), its secrets."""

    pool: ConnectionPool[psycopg.Connection[Any]]
    users: dict[str, User]
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    metrics_token: str | None = None
    tls: bool = False
    templates: Jinja2Templates = field(default_factory=_templates)
    # (when checked, whether phase 6 was applied): the Workflows link shows only with phase 6.
    workflows_checked: tuple[float, bool] = (float("-inf"), False)


def state(request: Request) -> ConsoleState:
    """The ConsoleState of the app serving *request*."""
    value = request.app.state.console
    assert isinstance(value, ConsoleState)
    return value


def read(request: Request, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
    """Run *fn* on a pooled autocommit connection and return what it returns."""
    with state(request).pool.connection() as conn:
        return fn(conn)


async def act(request: Request, sql: LiteralString, params: Sequence[Any]) -> JsonObject:
    """Call one fn_* (*sql*) on a pooled connection, in a thread; its answer, or Refused."""

    def run() -> JsonObject:
        with state(request).pool.connection() as conn:
            return call(conn, sql, params)

    return await run_in_threadpool(run)


# How long the answer "is phase 6 applied?" is reused before the ledger is read again.
_PHASE_CHECK_SECONDS = 10.0


def _workflows_applied(request: Request) -> bool:
    console = state(request)
    checked_at, applied = console.workflows_checked
    if time.monotonic() - checked_at > _PHASE_CHECK_SECONDS:
        with console.pool.connection() as conn:
            applied = 6 in applied_phases(conn)
        console.workflows_checked = (time.monotonic(), applied)
    return applied


def render(
    request: Request, template: str, page: str, user: User, status_code: int = 200, **context: Any
) -> Response:
    """*template* with the navigation, the viewer, their CSRF token and any flash messages."""
    flashes = request.session.pop("flash", [])
    return state(request).templates.TemplateResponse(
        request,
        template,
        {
            "nav": [n for n in NAV if n[0] != "workflows" or _workflows_applied(request)],
            "page": page,
            "user": user,
            "csrf": request.session.get("csrf", ""),
            "flashes": flashes,
            **context,
        },
        status_code=status_code,
    )


def flash(request: Request, message: str, level: str = "ok") -> None:
    """Show *message* once, on the next page the viewer sees."""
    request.session.setdefault("flash", [])
    request.session["flash"] = [*request.session["flash"], {"level": level, "text": message}]
