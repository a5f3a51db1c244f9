"""SMTP out (aiosmtplib), step by step so the outcome says whether DATA began.

`send` answers an `Outcome`:

- ``sent``: the server answered 250 after the message content;
- ``not_sent``: it failed before DATA (connect, TLS, AUTH, MAIL FROM or RCPT refused) or the
  server answered DATA or the content with an error code (it said it did not take the
  message): safe to try again;
- ``unknown``: the connection broke or timed out after DATA began, before a reply: the message
  may have been accepted. A person reconciles it; it is never sent again automatically.

`detail` is the SMTP reply code and text or the error's type: never the message's content.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from conveyor.customer.accounts import Account
from conveyor.customer.imap import MailServerError, describe

TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str  # sent | not_sent | unknown
    detail: str


def _client(account: Account, timeout: float) -> aiosmtplib.SMTP:
    server = account.smtp
    context = ssl.create_default_context()  # certificate and host name verified
    return aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=server.security == "tls",
        start_tls=server.security == "starttls",
        tls_context=context if server.security != "plain" else None,
        timeout=timeout,
    )


async def send(
    account: Account, message: EmailMessage, recipients: list[str], timeout: float = TIMEOUT
) -> Outcome:
    """One SMTP transaction for *message* to *recipients*; never raises for the server's sake."""
    client = _client(account, timeout)
    try:
        await client.connect()
        await client.login(account.smtp.user, account.smtp_password)
        await client.mail(account.from_address)
        for recipient in recipients:
            await client.rcpt(recipient)
    except aiosmtplib.SMTPResponseException as error:
        await _close(client)
        return Outcome("not_sent", f"{error.code} {' '.join(error.message.split())}"[:200])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        await _close(client)
        return Outcome("not_sent", describe(error))
    # From here on the server may take the message: only its explicit reply tells.
    try:
        response = await client.data(message.as_bytes())
    except aiosmtplib.SMTPResponseException as error:  # an explicit refusal of DATA/content
        await _close(client)
        return Outcome("not_sent", f"{error.code} {' '.join(error.message.split())}"[:200])
    except BaseException as error:  # disconnect, timeout, cancellation: outcome unknown
        await _close(client)
        if not isinstance(error, Exception):
            raise
        return Outcome("unknown", describe(error))
    await _close(client)
    return Outcome("sent", f"{response.code} {' '.join(response.message.split())}"[:200])


async def check(account: Account, timeout: float = 15.0) -> None:
    """Log in to *account*'s SMTP server and quit; MailServerError (one line) on failure."""
    client = _client(account, timeout)
    try:
        await client.connect()
        await client.login(account.smtp.user, account.smtp_password)
    except aiosmtplib.SMTPResponseException as error:
        raise MailServerError(f"SMTP {account.smtp}: {error.code} {error.message}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise MailServerError(f"SMTP {account.smtp}: {describe(error)}") from None
    finally:
        await _close(client)


async def _close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except Exception:
        client.close()
