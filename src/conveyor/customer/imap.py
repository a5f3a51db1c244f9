"""IMAP in (imap-tools): log in, read a mailbox's UIDVALIDITY, fetch messages by UID above a
cursor, and wait for new mail with IDLE where the server offers it.

Fetches use ``BODY.PEEK[]<0.N>``: nothing is marked seen and at most N bytes of a message are
downloaded (the size on the server comes with ``RFC822.SIZE``), so an oversized message costs
N bytes, not its size. Every failure of the server or the network is a `MailServerError` whose
text names the server (never the password).
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

from conveyor.customer.accounts import Account
from conveyor.errors import ConveyorError

TIMEOUT = 30.0
_FETCH_META = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)")


class MailServerError(ConveyorError):
    """An IMAP or SMTP server could not be reached, refused the login or failed mid-way."""


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    size: int
    raw: bytes


def describe(error: BaseException) -> str:
    """One line for *error* (its type when it has no text)."""
    if isinstance(error, MailboxLoginError):
        return "login refused"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


@contextmanager
def mailbox(account: Account, folder: str | None = None) -> Iterator[BaseMailBox]:
    """A logged-in connection to *account*'s IMAP server (with *folder* selected, if given)."""
    server = account.imap
    box: BaseMailBox | None = None
    try:
        if server.security == "tls":
            box = MailBox(server.host, server.port, timeout=TIMEOUT, ssl_context=_context())
        elif server.security == "starttls":
            box = MailBoxStartTls(server.host, server.port, timeout=TIMEOUT, ssl_context=_context())
        else:
            box = MailBoxUnencrypted(server.host, server.port, timeout=TIMEOUT)
        box.login(server.user, account.password, initial_folder=folder)
    except (OSError, imaplib.IMAP4.error, MailboxLoginError, ssl.SSLError) as error:
        if box is not None:  # connected, but the login (or the folder) was refused
            with suppress(Exception):
                box.client.shutdown()
        raise MailServerError(f"IMAP {server}: {describe(error)}") from None
    try:
        yield box
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
        raise MailServerError(f"IMAP {server}: {describe(error)}") from None
    finally:
        with suppress(Exception):
            box.logout()


def _context() -> ssl.SSLContext:
    return ssl.create_default_context()  # verifies the certificate and the host name


def uidvalidity(box: BaseMailBox, folder: str) -> int:
    status = box.folder.status(folder, ["UIDVALIDITY"])
    return int(status["UIDVALIDITY"])


def new_uids(box: BaseMailBox, last_uid: int) -> list[int]:
    """UIDs above *last_uid* in the selected folder, ascending (``N:*`` may name one below)."""
    typ, data = box.client.uid("SEARCH", "UID", f"{last_uid + 1}:*")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH answered {typ}")
    uids = {int(u) for u in (data[0] or b"").split()}
    return sorted(u for u in uids if u > last_uid)


def fetch(box: BaseMailBox, uids: list[int], max_bytes: int) -> list[Fetched]:
    """The messages *uids* (at most *max_bytes* of each), without setting \\Seen."""
    if not uids:
        return []
    spec = f"(UID RFC822.SIZE BODY.PEEK[]<0.{max_bytes + 1}>)"
    typ, data = box.client.uid("FETCH", ",".join(str(u) for u in uids), spec)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH answered {typ}")
    found: list[Fetched] = []
    for item in data:
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        uid = size = None
        for match in _FETCH_META.finditer(item[0]):
            if match.group(1):
                uid = int(match.group(1))
            if match.group(2):
                size = int(match.group(2))
        if uid is None:
            continue
        raw = bytes(item[1])
        found.append(Fetched(uid, size if size is not None else len(raw), raw))
    return sorted(found, key=lambda f: f.uid)


def supports_idle(box: BaseMailBox) -> bool:
    return "IDLE" in box.client.capabilities


def wait_for_mail(box: BaseMailBox, seconds: float) -> bool:
    """IDLE for up to *seconds*; True when the server announced something (EXISTS, …)."""
    try:
        responses = box.idle.wait(timeout=max(1, int(seconds)))
    except (TimeoutError, OSError, imaplib.IMAP4.error) as error:
        raise MailServerError(f"IMAP IDLE: {describe(error)}") from None
    return any(b"EXISTS" in r or b"RECENT" in r for r in responses)
