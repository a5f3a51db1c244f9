"""Django: the psycopg connection under ``django.db.connections[using]`` (Django ≥ 4.2 with
psycopg 3). Inside ``transaction.atomic()`` a job enqueued on it commits or rolls back with the
ORM's writes; outside one, Django's autocommit commits it at once::

    with transaction.atomic():
        user = User.objects.create(email=email)
        conveyor.enqueue(connection(), "mail.welcome", {"user": user.pk})
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections

from conveyor.errors import ConfigError


def connection(using: str = "default") -> psycopg.Connection[Any]:
    """The psycopg Connection of Django's database *using* (connected if it was not yet)."""
    wrapper = connections[using]
    wrapper.ensure_connection()
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise ConfigError(
            f"conveyor needs Django's PostgreSQL backend on psycopg 3, but database {using!r} "
            f"uses a {type(raw).__module__}.{type(raw).__name__}: install psycopg (3) and use "
            "ENGINE django.db.backends.postgresql"
        )
    return raw
