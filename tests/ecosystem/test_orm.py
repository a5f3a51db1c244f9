"""Enqueue inside an ORM's transaction, on the connection the ORM holds: SQLAlchemy Session and
AsyncSession, Django's transaction.atomic(). Real libraries, real PostgreSQL: a rollback leaves
neither the ORM's row nor the job; a commit leaves exactly one of each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import String, create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import conveyor
from conveyor import aio
from conveyor.errors import ConfigError
from conveyor.integrations import sqlalchemy as sa_integration
from helpers import scalar, unique


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "orm_signup"
    email: Mapped[str] = mapped_column(String, primary_key=True)


@pytest.fixture(scope="module")
def orm_dsn(substrate_dsn: str) -> str:
    with psycopg.connect(substrate_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orm_signup (email text PRIMARY KEY)")
    return substrate_dsn


def counts(dsn: str, kind: str, email: str) -> tuple[int, int]:
    """(rows of orm_signup with *email*, jobs of *kind*), as another connection sees them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = scalar(conn, "SELECT count(*) FROM public.orm_signup WHERE email = %s", (email,))
        jobs = scalar(conn, "SELECT count(*) FROM conveyor.job_queue WHERE kind = %s", (kind,))
    return int(rows), int(jobs)


@pytest.fixture
def engine(orm_dsn: str) -> Iterator[Any]:
    created = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(orm_dsn))
    yield created
    created.dispose()


@pytest.mark.parametrize("commit", [False, True], ids=["rollback", "commit"])
def test_sqlalchemy_session_enqueue_commits_or_rolls_back_with_the_orm(
    engine: Any, orm_dsn: str, commit: bool
) -> None:
    kind, email = unique("orm.sa."), unique("ada") + "@example.test"
    with Session(engine) as session:
        session.add(Signup(email=email))
        conveyor.enqueue(sa_integration.connection(session), kind, {"email": email})
        assert counts(orm_dsn, kind, email) == (0, 0)  # nothing visible before the commit
        if commit:
            session.commit()
        else:
            session.rollback()

    assert counts(orm_dsn, kind, email) == ((1, 1) if commit else (0, 0))


@pytest.mark.parametrize("commit", [False, True], ids=["rollback", "commit"])
def test_sqlalchemy_async_session_enqueue_commits_or_rolls_back_with_the_orm(
    orm_dsn: str, commit: bool
) -> None:
    kind, email = unique("orm.sa_async."), unique("ada") + "@example.test"

    async def scenario() -> None:
        async_engine = create_async_engine(
            "postgresql+psycopg://", async_creator=lambda: psycopg.AsyncConnection.connect(orm_dsn)
        )
        try:
            async with AsyncSession(async_engine) as session:
                session.add(Signup(email=email))
                await session.flush()
                raw = await sa_integration.async_connection(session)
                await aio.enqueue(raw, kind, {"email": email})
                await (session.commit() if commit else session.rollback())
        finally:
            await async_engine.dispose()

    asyncio.run(scenario())
    assert counts(orm_dsn, kind, email) == ((1, 1) if commit else (0, 0))


def test_sqlalchemy_on_another_driver_is_refused_with_the_fix() -> None:
    engine = create_engine("sqlite://")
    with Session(engine) as session, pytest.raises(ConfigError, match=r"postgresql\+psycopg://"):
        sa_integration.connection(session)
    engine.dispose()


# ------------------------------------------------------------------------------------- Django


@pytest.fixture(scope="module")
def django_db(orm_dsn: str) -> Iterator[Any]:
    """Django configured in-process on the module's database (settings.configure, once); the
    Signup model on public.orm_signup."""
    django = pytest.importorskip("django")
    from django.conf import settings
    from django.db import connections

    params = conninfo_to_dict(orm_dsn)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname"),
        "USER": params.get("user"),
        "PASSWORD": params.get("password") or "",
        "HOST": params.get("host"),
        "PORT": params.get("port") or "",
    }
    if not settings.configured:
        settings.configure(DATABASES={"default": database}, INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
    else:
        connections["default"].close()
        settings.DATABASES["default"].update(database)
    yield _django_signup_model()
    connections.close_all()


_DJANGO_MODELS: dict[str, Any] = {}


def _django_signup_model() -> Any:
    """A Django model on public.orm_signup, defined once per process (after django.setup())."""
    if "signup" not in _DJANGO_MODELS:
        from django.db import models

        class DjangoSignup(models.Model):  # type: ignore[misc]
            email = models.TextField(primary_key=True)

            class Meta:
                app_label = "conveyor_ecosystem_tests"
                db_table = "orm_signup"

        _DJANGO_MODELS["signup"] = DjangoSignup
    return _DJANGO_MODELS["signup"]


@pytest.mark.parametrize("commit", [False, True], ids=["rollback", "commit"])
def test_django_atomic_enqueue_commits_or_rolls_back_with_the_orm(
    django_db: Any, orm_dsn: str, commit: bool
) -> None:
    from django.db import transaction

    from conveyor.integrations import django as django_integration

    class Rollback(Exception):
        pass

    kind, email = unique("orm.django."), unique("ada") + "@example.test"
    try:
        with transaction.atomic():
            django_db.objects.create(email=email)
            job_id = conveyor.enqueue(django_integration.connection(), kind, {"email": email})
            assert job_id > 0 and counts(orm_dsn, kind, email) == (0, 0)
            if not commit:
                raise Rollback
    except Rollback:
        pass

    assert counts(orm_dsn, kind, email) == ((1, 1) if commit else (0, 0))
