"""What every page shares: the connection pool, the users, the templates, and `render`.

Pages read through `read(request, fn)`, which runs *fn* on a pooled connection of the read
route (CONVEYOR_READ_DATABASE_URL when set: a replica will do) and act through `act`, on the
primary.
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
    ("approvals", "/approvals", "Approvals"),
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
    """The running console: its pools and users (read once at start), its secrets.

    *pool* reaches the primary (every action); *read_pool*, when set, the read route.
    """

    pool: ConnectionPool[psycopg.Connection[Any]]
    users: dict[str, User]
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    metrics_token: str | None = None
    tls: bool = False
    templates: Jinja2Templates = field(default_factory=_templates)
    # (when checked, the applied phases): Workflows shows only with phase 6, Approvals with 7.
    phases_checked: tuple[float, frozenset[int]] = (float("-inf"), frozenset())
    read_pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    @property
    def reads(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The pool pages read from: the read route's when there is one, else the primary's."""
        return self.read_pool if self.read_pool is not None else self.pool


def state(request: Request) -> ConsoleState:
    """The ConsoleState of the app serving *request*."""
    value = request.app.state.console
    assert isinstance(value, ConsoleState)
    return value


def read(
    request: Request, fn: Callable[[psycopg.Connection[Any]], T], *, primary: bool = False
) -> T:
    """Run *fn* on a pooled autocommit connection of the read route (of the primary with
    *primary*: a read that may write, like the phase ledger's bootstrap); what it returns."""
    console = state(request)
    with (console.pool if primary else console.reads).connection() as conn:
        return fn(conn)


async def act(request: Request, sql: LiteralString, params: Sequence[Any]) -> JsonObject:
    """Call one fn_* (*sql*) on a pooled connection, in a thread; its answer, or Refused."""

    def run() -> JsonObject:
        with state(request).pool.connection() as conn:
            return call(conn, sql, params)

    return await run_in_threadpool(run)


# How long the answer "which phases are applied?" is reused before the ledger is read again.
_PHASE_CHECK_SECONDS = 10.0
# A page shown in the navigation only once its phase is applied.
_NAV_PHASES = {"workflows": 6, "approvals": 7}


def _applied(request: Request) -> frozenset[int]:
    console = state(request)
    checked_at, applied = console.phases_checked
    if time.monotonic() - checked_at > _PHASE_CHECK_SECONDS:
        with console.reads.connection() as conn:
            applied = frozenset(applied_phases(conn))
        console.phases_checked = (time.monotonic(), applied)
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
            "nav": [n for n in NAV if _NAV_PHASES.get(n[0], 0) in {0, *_applied(request)}],
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
