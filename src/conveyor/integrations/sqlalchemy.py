"""SQLAlchemy: the psycopg connection under a `Session` or `AsyncSession`'s transaction.

The engine must use the psycopg (3) driver (``postgresql+psycopg://``). The session begins its
transaction if it has none, so a job enqueued on the returned connection commits or rolls back
with the session::

    with Session(engine) as session, session.begin():
        session.add(user)
        conveyor.enqueue(connection(session), "mail.welcome", {"user": user.email})
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conveyor.errors import ConfigError


def connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg Connection that *session*'s current transaction runs on."""
    raw = session.connection().connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise ConfigError(_wrong_driver(raw))
    return raw


async def async_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg AsyncConnection that *session*'s current transaction runs on."""
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    if not isinstance(raw, psycopg.AsyncConnection):
        raise ConfigError(_wrong_driver(raw))
    return raw


def _wrong_driver(raw: object) -> str:
    return (
        f"conveyor needs SQLAlchemy's psycopg driver, but the session's connection is a "
        f"{type(raw).__module__}.{type(raw).__name__}: create the engine with a "
        "postgresql+psycopg:// URL"
    )
