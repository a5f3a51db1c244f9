"""Mail accounts of the channel adapter, from the environment or a TOML file.

Passwords come from an environment variable or a file (``*_FILE``), never from the URL, the
database or the command line, and never appear in a repr, a log line or an error. TLS is the
default: ``imaps://`` (implicit TLS) or ``imap+starttls://``, ``smtps://`` or
``smtp+starttls://``, with certificate verification. Plain ``imap://`` / ``smtp://`` are refused
unless the account sets ``allow_plaintext = "loopback"`` and the host is a loopback address.

A file (``conveyor channel run --accounts FILE`` or ``$CONVEYOR_CHANNEL_ACCOUNTS_FILE``)::

    [accounts.support]
    imap_url = "imaps://support@imap.example.org"      # user@host[:port]
    mailboxes = ["INBOX"]
    smtp_url = "smtp+starttls://support@smtp.example.org:587"
    from_address = "support@example.org"
    password_env = "SUPPORT_MAIL_PASSWORD"              # or password_file = "/run/secrets/mail"

One account from the environment: ``CONVEYOR_CHANNEL_IMAP_URL``, ``CONVEYOR_CHANNEL_SMTP_URL``,
``CONVEYOR_CHANNEL_FROM``, ``CONVEYOR_CHANNEL_PASSWORD`` (or ``CONVEYOR_CHANNEL_PASSWORD_FILE``),
optional ``CONVEYOR_CHANNEL_ACCOUNT`` (name, default ``default``), ``CONVEYOR_CHANNEL_MAILBOXES``
(comma-separated, default ``INBOX``) and ``CONVEYOR_CHANNEL_ALLOW_PLAINTEXT=loopback``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from conveyor.errors import ConfigError

ENV_PREFIX = "CONVEYOR_CHANNEL_"
FILE_VARIABLE = "CONVEYOR_CHANNEL_ACCOUNTS_FILE"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

_SCHEMES = {
    "imaps": ("imap", "tls", 993),
    "imap+starttls": ("imap", "starttls", 143),
    "imap": ("imap", "plain", 143),
    "smtps": ("smtp", "tls", 465),
    "smtp+starttls": ("smtp", "starttls", 587),
    "smtp": ("smtp", "plain", 25),
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server: protocol (imap|smtp), security (tls|starttls|plain), host, port, user."""

    protocol: str
    security: str
    host: str
    port: int
    user: str

    def __str__(self) -> str:  # what logs and errors show: never a password
        return f"{self.protocol}{'' if self.security == 'plain' else '/' + self.security}://{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Account:
    """One mailbox owner: where to read, where to send, as whom."""

    name: str
    imap: Endpoint
    smtp: Endpoint
    from_address: str
    mailboxes: tuple[str, ...] = ("INBOX",)
    password: str = field(default="", repr=False)
    smtp_password: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"Account({self.name!r}, imap={self.imap}, smtp={self.smtp})"


def endpoint(url: str, protocol: str, *, allow_plaintext: str | None, where: str) -> Endpoint:
    """Parse *url* for *protocol*; ConfigError (naming *where*, never echoing a password)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"{where}: not a valid URL ({error})") from None
    known = _SCHEMES.get(parts.scheme)
    if known is None or known[0] != protocol:
        schemes = ", ".join(f"{s}://" for s, v in _SCHEMES.items() if v[0] == protocol)
        raise ConfigError(f"{where}: scheme {parts.scheme!r} is not one of {schemes}")
    if parts.password is not None:
        raise ConfigError(
            f"{where}: the URL carries a password; remove it and use password_env or "
            "password_file (or CONVEYOR_CHANNEL_PASSWORD[_FILE])"
        )
    if not parts.hostname or not parts.username:
        raise ConfigError(f"{where}: expected {parts.scheme}://USER@HOST[:PORT]")
    _, security, default_port = known
    if security == "plain":
        if allow_plaintext != "loopback":
            raise ConfigError(
                f"{where}: plaintext {parts.scheme}:// is refused; use "
                f"{protocol}s:// or {protocol}+starttls:// (for a loopback test server set "
                'allow_plaintext = "loopback")'
            )
        if parts.hostname not in LOOPBACK:
            raise ConfigError(
                f"{where}: plaintext {parts.scheme}:// is allowed only to a loopback host, "
                f"not {parts.hostname}"
            )
    return Endpoint(
        protocol, security, parts.hostname, port or default_port, unquote(parts.username)
    )


def _secret(
    spec: Mapping[str, Any], where: str, env: Mapping[str, str], prefix: str = "password"
) -> str | None:
    env_name = spec.get(f"{prefix}_env")
    file_name = spec.get(f"{prefix}_file")
    if env_name:
        value = env.get(str(env_name))
        if not value:
            raise ConfigError(f"{where}: environment variable {env_name} is not set")
        return value
    if file_name:
        try:
            return Path(str(file_name)).read_text().strip()
        except OSError as error:
            raise ConfigError(f"{where}: cannot read {file_name}: {error.strerror}") from None
    return None


def account(
    name: str, spec: Mapping[str, Any], where: str, env: Mapping[str, str] | None = None
) -> Account:
    """One account from a mapping of its settings (a TOML table or the environment)."""
    env = os.environ if env is None else env
    allow = spec.get("allow_plaintext")
    allow_plaintext = str(allow) if allow else None
    for key in ("imap_url", "smtp_url", "from_address"):
        if not spec.get(key):
            raise ConfigError(f"{where}: {key} is required")
    password = _secret(spec, where, env)
    if password is None:
        raise ConfigError(f"{where}: set password_env or password_file")
    mailboxes = spec.get("mailboxes") or ["INBOX"]
    if isinstance(mailboxes, str):
        mailboxes = [m.strip() for m in mailboxes.split(",") if m.strip()]
    return Account(
        name=name,
        imap=endpoint(str(spec["imap_url"]), "imap", allow_plaintext=allow_plaintext, where=where),
        smtp=endpoint(str(spec["smtp_url"]), "smtp", allow_plaintext=allow_plaintext, where=where),
        from_address=str(spec["from_address"]),
        mailboxes=tuple(str(m) for m in mailboxes),
        password=password,
        smtp_password=_secret(spec, where, env, "smtp_password") or password,
    )


def from_file(path: Path, env: Mapping[str, str] | None = None) -> list[Account]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"accounts file {path}: cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"accounts file {path}: not valid TOML: {error}") from None
    tables = data.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"accounts file {path}: no [accounts.NAME] table")
    return [account(n, s, f"{path}: account {n!r}", env) for n, s in tables.items()]


def from_env(env: Mapping[str, str]) -> list[Account]:
    if not env.get(ENV_PREFIX + "IMAP_URL"):
        return []
    spec: dict[str, Any] = {
        "imap_url": env.get(ENV_PREFIX + "IMAP_URL"),
        "smtp_url": env.get(ENV_PREFIX + "SMTP_URL"),
        "from_address": env.get(ENV_PREFIX + "FROM"),
        "mailboxes": env.get(ENV_PREFIX + "MAILBOXES", "INBOX"),
        "allow_plaintext": env.get(ENV_PREFIX + "ALLOW_PLAINTEXT"),
        "password_env": ENV_PREFIX + "PASSWORD" if env.get(ENV_PREFIX + "PASSWORD") else None,
        "password_file": env.get(ENV_PREFIX + "PASSWORD_FILE"),
    }
    name = env.get(ENV_PREFIX + "ACCOUNT", "default")
    return [account(name, spec, "CONVEYOR_CHANNEL_* environment", env)]


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> list[Account]:
    """The accounts from *path*, else $CONVEYOR_CHANNEL_ACCOUNTS_FILE, else the environment."""
    env = os.environ if env is None else env
    if path is None and env.get(FILE_VARIABLE):
        path = Path(env[FILE_VARIABLE])
    found = from_file(path, env) if path is not None else from_env(env)
    if not found:
        raise ConfigError(
            "no mail account configured: pass --accounts FILE, set "
            f"{FILE_VARIABLE}, or set CONVEYOR_CHANNEL_IMAP_URL, _SMTP_URL, _FROM and "
            "_PASSWORD (see docs/channel.md)"
        )
    names = [a.name for a in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"mail accounts: duplicate names in {names}")
    return found
