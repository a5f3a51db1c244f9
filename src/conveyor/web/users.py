"""Console users: a file of `name:role:hash` lines, passwords hashed with the stdlib's scrypt.

The file is the only store; `conveyor web user add` writes it. No plain password is ever kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConfigError

ROLES = ("reader", "operator")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# scrypt cost: 16 MiB of memory and ~50 ms per check, the cost RFC 7914 suggests for logins.
_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True, slots=True)
class User:
    """One console user: a name (recorded with every action), a role and a password hash."""

    name: str
    role: str
    password_hash: str

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash`, salt and hash in base64."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_password(password: str, password_hash: str) -> bool:
    """True when *password* matches *password_hash* (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = password_hash.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_name(name: str) -> None:
    """Raise ConfigError unless *name* is a usable user name."""
    if not _NAME.match(name):
        raise ConfigError(
            f"user name {name!r} is not valid: use 1 to 64 letters, digits, _ . @ or -"
        )


def check_role(role: str) -> None:
    """Raise ConfigError unless *role* is reader or operator."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not valid: use reader or operator")


def load(path: Path) -> dict[str, User]:
    """The users in *path*, by name; ConfigError naming the line when one is malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError as error:
        raise ConfigError(
            f"the users file {path} does not exist: create a user with "
            "`conveyor web user add NAME --role operator`"
        ) from error
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not parts[2].startswith("scrypt$") or parts[1] not in ROLES:
            raise ConfigError(
                f"{path}, line {number}: expected NAME:ROLE:scrypt$…; rewrite it with "
                "`conveyor web user add`"
            )
        users[parts[0]] = User(name=parts[0], role=parts[1], password_hash=parts[2])
    if not users:
        raise ConfigError(
            f"the users file {path} has no user: add one with "
            "`conveyor web user add NAME --role operator`"
        )
    return users


def add(path: Path, name: str, role: str, password: str) -> bool:
    """Write *name* with *role* and a hash of *password* to *path*; True if it replaced a user."""
    check_name(name)
    check_role(role)
    if len(password) < 8:
        raise ConfigError("the password is too short: use at least 8 characters")
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split(":", 1)[0] != name]
    kept.append(f"{name}:{role}:{hash_password(password)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("\n".join(kept) + "\n")
    return len(kept) == len(lines)
