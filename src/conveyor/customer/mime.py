"""Parse one inbound RFC 5322 message (stdlib `email`, policy default) into what ingest stores.

Never raises for a message's content: whatever is odd becomes a *problem* (a short code stored
with the message) and the rest is kept. Problems:

- ``oversized``: the raw message exceeded *max_bytes*; only its first *max_bytes* were parsed;
- ``nesting_too_deep``: multipart nesting beyond *max_depth* (deeper parts are skipped);
- ``unknown_charset:<name>``: a text part in a charset Python does not know (decoded as UTF-8
  with replacement characters);
- ``malformed_part``: the parser reported defects (a broken boundary, bad base64, …);
- ``malformed_header:<name>``: a header that could not be parsed (left out).
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import email.utils
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_DEPTH = 20


@dataclass(frozen=True, slots=True)
class Parsed:
    """The fields fn_customer_message_ingest takes (addresses as bare addr-specs)."""

    message_id: str | None
    date: datetime | None
    subject: str | None
    from_address: str | None
    to_addresses: list[str]
    cc_addresses: list[str]
    reply_to: str | None
    in_reply_to: str | None
    references: str | None
    text_body: str | None
    html_body: str | None
    raw_size: int
    problems: list[str] = field(default_factory=list)


def clean(text: str | None) -> str | None:
    """*text* storable in PostgreSQL: no NUL, no lone surrogates (from undecodable bytes)."""
    if text is None:
        return None
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def parse(
    raw: bytes,
    *,
    raw_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Parsed:
    """Parse *raw* (of *raw_size* bytes on the server, when only a prefix was fetched)."""
    size = raw_size if raw_size is not None else len(raw)
    problems: list[str] = []
    if size > max_bytes or len(raw) > max_bytes:
        problems.append("oversized")
        raw = raw[:max_bytes]
    try:
        message: Message = email.message_from_bytes(raw, policy=email.policy.default)
    except RecursionError:  # the stdlib parser recurses per multipart level
        problems.append("nesting_too_deep")
        message = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    except Exception:
        problems.append("malformed_part")
        message = EmailMessage()
    return _fields(message, size, problems, max_depth)


def _fields(message: Message, size: int, problems: list[str], max_depth: int) -> Parsed:
    bodies: dict[str, str] = {}
    _walk(message, 0, max_depth, bodies, problems)
    return Parsed(
        message_id=_header(message, "Message-ID", problems),
        date=_date(message, problems),
        subject=_header(message, "Subject", problems),
        from_address=_first(_addresses(message, "From", problems)),
        to_addresses=_addresses(message, "To", problems),
        cc_addresses=_addresses(message, "Cc", problems),
        reply_to=_first(_addresses(message, "Reply-To", problems)),
        in_reply_to=_header(message, "In-Reply-To", problems),
        references=_header(message, "References", problems),
        text_body=clean(bodies.get("plain")),
        html_body=clean(bodies.get("html")),
        raw_size=size,
        problems=_unique(problems),
    )


def _walk(
    part: Message, depth: int, max_depth: int, bodies: dict[str, str], problems: list[str]
) -> None:
    """Collect the first text/plain and text/html bodies, depth-first, up to *max_depth*."""
    if part.defects:
        problems.append("malformed_part")
    if part.is_multipart():
        if depth >= max_depth:
            problems.append("nesting_too_deep")
            return
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                _walk(child, depth + 1, max_depth, bodies, problems)
        return
    if part.get_content_maintype() != "text" or part.get_content_disposition() == "attachment":
        return
    subtype = part.get_content_subtype()
    if subtype in ("plain", "html") and subtype not in bodies:
        bodies[subtype] = _text(part, problems)


def _text(part: Message, problems: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        problems.append("malformed_part")
        return ""
    if not isinstance(data, bytes):
        data = str(part.get_payload()).encode("utf-8", "replace")
    charset = part.get_content_charset() or "us-ascii"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        problems.append(f"unknown_charset:{clean(charset)[:40]}")  # type: ignore[index]
        return data.decode("utf-8", errors="replace")


def _header(message: Message, name: str, problems: list[str]) -> str | None:
    try:
        value: Any = message.get(name)
    except Exception:
        problems.append(f"malformed_header:{name.lower()}")
        return None
    if value is None:
        return None
    text = clean(" ".join(str(value).split()))
    return text or None


def _addresses(message: Message, name: str, problems: list[str]) -> list[str]:
    try:
        values = [str(v) for v in message.get_all(name, [])]
    except Exception:
        problems.append(f"malformed_header:{name.lower()}")
        return []
    found = []
    for _display, address in email.utils.getaddresses(values):
        cleaned = clean(address.strip())
        if cleaned and "@" in cleaned:
            found.append(cleaned)
    return found


def _date(message: Message, problems: list[str]) -> datetime | None:
    text = _header(message, "Date", problems)
    if not text:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
