"""Logins, signed sessions and CSRF: who is looking, and whether a POST may act.

The session cookie is signed by Starlette's SessionMiddleware (itsdangerous); it carries the user
name and a random CSRF token that every form sends back. Rights are checked on every request
against the users read at start, so a session never outlives its user's removal.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.web.state import state
from conveyor.web.users import User, verify_password

log = logging.getLogger(__name__)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def current_user(request: Request) -> User | None:
    """The logged-in user, or None."""
    name = request.session.get("user")
    return state(request).users.get(name) if isinstance(name, str) else None


def viewer(request: Request) -> User:
    """The logged-in user; a redirect to the login page when there is none."""
    user = current_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, headers={"Location": f"/login?next={quote(target)}"})
    csrf_token(request)
    return user


async def action_form(request: Request) -> tuple[User, FormData]:
    """The operator posting *request* and their form, once the CSRF token matched.

    403 for a missing or wrong token, and for a reader: readers never act.
    """
    user = viewer(request)
    form = await checked_form(request)
    if not user.may_act:
        raise HTTPException(403, f"{user.name} is a reader: readers see, only operators act")
    return user, form


async def checked_form(request: Request) -> FormData:
    """The form of a POST, once its CSRF token matched the session's (403 otherwise)."""
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf_token(request)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def safe_path(value: Any) -> str:
    """*value* when it is a path on this site, else "/": never a URL to send a user elsewhere.

    Browsers read "//host" and "/\\host" as another site, and drop tabs and newlines first.
    """
    if not isinstance(value, str) or any(c in value for c in "\t\r\n"):
        return "/"
    if value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def login_page(request: Request) -> Response:
    token = csrf_token(request)
    return state(request).templates.TemplateResponse(
        request,
        "login.html",
        {"csrf": token, "next": safe_path(request.query_params.get("next")), "error": None},
    )


async def login(request: Request) -> Response:
    form = await checked_form(request)
    token = csrf_token(request)
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    user = state(request).users.get(name)
    # A check against a dummy hash for unknown names keeps timing from telling names apart.
    known = user is not None and verify_password(password, user.password_hash)
    if user is None:
        verify_password(password, _DUMMY_HASH)
    if not known or user is None:
        log.warning("console login failed for %r from %s", name, _client(request))
        return state(request).templates.TemplateResponse(
            request,
            "login.html",
            {
                "csrf": token,
                "next": safe_path(form.get("next")),
                "error": "Wrong name or password.",
            },
            status_code=401,
        )
    request.session.clear()  # a fresh session (and CSRF token) at every login
    request.session["user"] = user.name
    csrf_token(request)
    log.info("console login: %s (%s) from %s", user.name, user.role, _client(request))
    return RedirectResponse(safe_path(form.get("next")), status_code=303)


async def logout(request: Request) -> Response:
    viewer(request)
    await checked_form(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


_DUMMY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
