"""`conveyor channel run | check`: the email channel adapter (IMAP in, SMTP out).

`run` is a worker (executor external_worker, queue customer) with the channel's handlers, plus
one watcher thread per mailbox: it waits with IMAP IDLE where the server offers it (else sleeps
a poll interval) and then enqueues a ``customer_message_inbound`` job with an idempotency key
per mailbox, so every poll goes through the queue; a periodic poll is the fallback. A server
that cannot be reached is one log line and a capped backoff, never a traceback.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import click
import psycopg

from conveyor import db, jobs
from conveyor.cli.context import check_reachable, console, err_console, state
from conveyor.errors import ConfigError, ConveyorError
from conveyor.worker import Worker, WorkerConfig

log = logging.getLogger("conveyor.customer.watch")

MAX_BACKOFF = 300.0


def _channel() -> Any:
    try:
        from conveyor.customer import accounts, channel, imap, smtp
    except ImportError as error:
        raise ConfigError(
            f"the channel adapter needs its mail libraries ({error.name} is missing): "
            "pip install 'conveyor[channel]' (imap-tools, aiosmtplib)"
        ) from None
    return accounts, channel, imap, smtp


class Watcher(threading.Thread):
    """Keeps one mailbox watched and enqueues an inbound poll whenever it may hold new mail."""

    def __init__(self, url: str, account: Any, folder: str, poll_interval: float) -> None:
        super().__init__(name=f"watch-{account.name}-{folder}", daemon=True)
        self.url, self.account, self.folder = url, account, folder
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self.key = f"customer_inbound:{account.name}:{folder}"
        self._conn: psycopg.Connection[Any] | None = None

    def run(self) -> None:
        _accounts, channel, imap, _smtp = _channel()
        backoff = 1.0
        while not self.stopping.is_set():
            self.enqueue(channel)
            try:
                with imap.mailbox(self.account, self.folder) as box:
                    idle = imap.supports_idle(box)
                    if backoff > 1.0:
                        log.warning(
                            "channel %s/%s: IMAP reachable again", self.account.name, self.folder
                        )
                    backoff = 1.0
                    while not self.stopping.is_set():
                        if idle:
                            imap.wait_for_mail(box, self.poll_interval)
                        else:
                            self.stopping.wait(self.poll_interval)
                        self.enqueue(channel)
            except imap.MailServerError as error:
                log.warning(
                    "channel %s/%s: %s; retrying in %.0f s",
                    self.account.name,
                    self.folder,
                    error,
                    backoff,
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception as error:
                log.warning(
                    "channel %s/%s: watcher error %s; retrying in %.0f s",
                    self.account.name,
                    self.folder,
                    type(error).__name__,
                    backoff,
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def enqueue(self, channel: Any) -> None:
        payload = {"account": self.account.name, "mailbox": self.folder}
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = db.connect(
                    self.url, autocommit=True, application_name="conveyor-channel-watch"
                )
            jobs.enqueue(
                self._conn, channel.INBOUND, payload, queue=channel.QUEUE, idempotency_key=self.key
            )
        except (psycopg.Error, ConveyorError) as error:
            log.warning(
                "channel %s/%s: could not enqueue a poll: %s",
                self.account.name,
                self.folder,
                " ".join(str(error).split())[:200],
            )

    def stop(self) -> None:
        self.stopping.set()


@click.group("channel")
def channel_group() -> None:
    """The email channel adapter: IMAP in, SMTP out (phase 7)."""


_ACCOUNTS = click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML file of mail accounts (default $CONVEYOR_CHANNEL_ACCOUNTS_FILE, else the "
    "CONVEYOR_CHANNEL_* environment).",
)


@channel_group.command("run")
@_ACCOUNTS
@click.option("--concurrency", type=click.IntRange(1, 100), default=4, show_default=True)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.5, 3600),
    default=60.0,
    show_default=True,
    help="Seconds between fallback polls (IDLE wakes it sooner).",
)
@click.option(
    "--lease-seconds",
    type=click.IntRange(min=3),
    default=None,
    help="Lease length (default: the database's queue.lease.default_seconds).",
)
@click.option("--smtp-timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1024),
    default=10 * 1024 * 1024,
    show_default=True,
    help="Bytes of one message fetched and parsed at most.",
)
@click.option("--name", default=None, help="Worker name (default host:pid:random).")
@click.pass_context
def run(
    ctx: click.Context,
    accounts_file: Path | None,
    concurrency: int,
    poll_interval: float,
    lease_seconds: int | None,
    smtp_timeout: float,
    max_bytes: int,
    name: str | None,
) -> None:
    """Run the adapter until SIGTERM/SIGINT: watch each mailbox and work the customer queue."""
    url = check_reachable(ctx, 7)
    accounts, channel, _imap, _smtp = _channel()
    found = accounts.load(accounts_file)
    channel.configure(url, found, max_bytes=max_bytes, smtp_timeout=smtp_timeout)
    config = WorkerConfig(
        name=name,
        queues=(channel.QUEUE,),
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        poll_interval=0.2,
        executor=channel.EXECUTOR,
    )
    runner = Worker(channel.registry, url, config)
    watchers = [Watcher(url, a, f, poll_interval) for a in found for f in a.mailboxes]
    for watcher in watchers:
        watcher.start()
    err_console.print(
        f"channel {runner.name}: accounts {', '.join(a.name for a in found)}; "
        f"{len(watchers)} mailboxes watched; kinds {', '.join(channel.registry.kinds)}"
    )
    try:
        stats = runner.run_forever()
    finally:
        for watcher in watchers:
            watcher.stop()
    err_console.print(f"channel {runner.name} stopped: {stats}")


@channel_group.command("check")
@_ACCOUNTS
@click.pass_context
def check(ctx: click.Context, accounts_file: Path | None) -> None:
    """Log in to each account's IMAP and SMTP servers; one line each, nonzero on a failure."""
    import asyncio

    check_reachable(ctx, 7)
    accounts, _channel_module, imap, smtp = _channel()
    with db.connect(
        settings=state(ctx).settings, autocommit=True, application_name="conveyor-cli"
    ) as conn:
        row = conn.execute("SELECT pg_has_role(current_user, 'conveyor_pii', 'MEMBER')").fetchone()
    failures = 0
    if not (row and row[0]):
        failures += 1
        console.print(
            "database: FAILED this login is not a member of conveyor_pii "
            "(the adapter stores and reads message bodies)"
        )
    else:
        console.print("database: ok (member of conveyor_pii)")
    for account in accounts.load(accounts_file):
        for label, probe in (
            ("IMAP", lambda a=account: _imap_login(imap, a)),
            ("SMTP", lambda a=account: asyncio.run(smtp.check(a))),
        ):
            server = account.imap if label == "IMAP" else account.smtp
            try:
                probe()
            except imap.MailServerError as error:
                failures += 1
                console.print(f"{account.name}: {label} FAILED {error}", soft_wrap=True)
            else:
                console.print(f"{account.name}: {label} ok ({server})", soft_wrap=True)
    if failures:
        raise click.exceptions.Exit(1)


def _imap_login(imap: Any, account: Any) -> None:
    with imap.mailbox(account, None) as box:
        for folder in account.mailboxes:
            imap.uidvalidity(box, folder)
