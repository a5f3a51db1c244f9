"""The default classify and draft handlers of phase 7, and the hook to plug in your own.

Both are transactional handlers (the SQL call and the job's completion commit together) for the
job kinds ``customer_message_classify`` and ``customer_message_draft``, whose payload is
``{"message_id": N}`` only. Each reads the message through ``fn_customer_message_body`` (so the
worker's login needs ``conveyor_pii``), asks a *classifier* or a *drafter* and stores the answer
with ``fn_customer_message_classify`` / ``fn_customer_message_draft``. Nothing from the mail goes
into the job's result or error: results carry ids, labels and hashes, and an exception raised by
a classifier or drafter is reported by its type only (its text might quote the mail).

The hook: a classifier is any ``Callable[[Mail], str]`` returning a label (``billing``,
``support``, … matching ``^[a-z0-9][a-z0-9_.-]{0,63}$``), a drafter any ``Callable[[Mail],
Draft]``. Pass yours to `register`::

    from conveyor.customer import handlers

    def llm_drafter(mail: handlers.Mail) -> handlers.Draft:
        text = my_model.reply(mail.subject, mail.text)   # your language model
        return handlers.Draft(subject=f"Re: {mail.subject}", text=text)

    handlers.register(registry, drafter=llm_drafter)

Everything else (approval bound to the draft's hash, sending once, the PII boundary) stays as
it is: a drafter only proposes; a person still approves while ``customer.approve_required``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.customer import store
from conveyor.errors import Disabled, Refused
from conveyor.handlers import Fail, JobContext, Registry, Retry, Snooze
from conveyor.types import JsonObject

CLASSIFY_KIND = "customer_message_classify"
DRAFT_KIND = "customer_message_draft"
DISABLED_SNOOZE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Mail:
    """What a classifier or drafter sees of one message (PII: keep it out of logs)."""

    message_id: int
    subject: str | None
    from_address: str | None
    text: str | None
    html: str | None
    classification: str | None = None
    to: Sequence[str] = field(default_factory=tuple)

    @classmethod
    def from_body(cls, answer: JsonObject) -> Mail:
        return cls(
            message_id=int(answer["message_id"]),
            subject=answer.get("subject"),
            from_address=answer.get("from"),
            text=answer.get("text"),
            html=answer.get("html"),
            classification=answer.get("classification"),
            to=tuple(answer.get("to") or ()),
        )


@dataclass(frozen=True, slots=True)
class Draft:
    """A proposed reply: stored as the message's draft, hashed, then approved (or not)."""

    subject: str | None
    text: str


Classifier = Callable[[Mail], str]
Drafter = Callable[[Mail], Draft]

# Label → keywords (whole words or phrases, case-insensitive), tried in this order.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("spam", ("unsubscribe", "lottery", "you have won", "viagra", "crypto giveaway", "casino")),
    (
        "complaint",
        ("complaint", "unacceptable", "disappointed", "terrible", "angry", "worst", "furious"),
    ),
    ("billing", ("invoice", "billing", "payment", "refund", "charged", "charge", "receipt")),
    (
        "support",
        ("help", "error", "problem", "issue", "not working", "broken", "how do i", "cannot"),
    ),
)
_PATTERNS = tuple(
    (label, re.compile(r"\b(?:" + "|".join(re.escape(word) for word in words) + r")\b", re.I))
    for label, words in RULES
)

REPLIES = {
    "billing": "Thank you for your message about billing. We are checking your account and "
    "will come back to you with the details shortly.",
    "complaint": "We are sorry to hear about your experience. Your message has been passed to "
    "the team responsible, and a person will reply to you personally.",
    "support": "Thank you for contacting support. We are looking into the problem you "
    "describe and will reply with a solution as soon as possible.",
    "spam": "Thank you for your message.",
    "other": "Thank you for your message. We have received it and will reply soon.",
}

TEMPLATE = "Hello,\n\n{reply}\n\nKind regards,\nCustomer service\n"


def rule_classifier(mail: Mail) -> str:
    """The default classifier: the first label of RULES whose keywords occur in the subject or
    text, else ``other``."""
    haystack = f"{mail.subject or ''}\n{mail.text or ''}"
    for label, pattern in _PATTERNS:
        if pattern.search(haystack):
            return label
    return "other"


def template_drafter(mail: Mail) -> Draft:
    """The default drafter: a polite template reply for the message's classification."""
    subject = mail.subject or ""
    if not re.match(r"^\s*re:", subject, re.I):
        subject = f"Re: {subject}".rstrip() if subject else "Re: your message"
    reply = REPLIES.get(mail.classification or "other", REPLIES["other"])
    return Draft(subject=subject, text=TEMPLATE.format(reply=reply))


def _message_id(context: JobContext) -> int:
    value = context.payload.get("message_id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise Fail(f'{context.job.kind}: payload must be {{"message_id": N}}')
    return value


def _mail(context: JobContext, message_id: int) -> Mail:
    try:
        return Mail.from_body(store.body(context.conn, message_id))
    except Disabled as refusal:
        raise Snooze(DISABLED_SNOOZE_SECONDS) from refusal
    except Refused as refusal:
        raise Fail(f"{context.job.kind} of message {message_id}: {refusal.reason}") from refusal


def _ask(context: JobContext, message_id: int, func: Callable[[Mail], Any], mail: Mail) -> Any:
    """Run a classifier or drafter; its exception is reported by type only (no mail text)."""
    try:
        return func(mail)
    except (Fail, Retry, Snooze):
        raise
    except Exception as error:  # a plug-in may raise anything; its message may quote the mail
        raise Retry(
            f"{context.job.kind} of message {message_id}: "
            f"{getattr(func, '__name__', 'hook')} raised {type(error).__name__}"
        ) from None


def _store(context: JobContext, message_id: int, run: Callable[[], JsonObject]) -> JsonObject:
    try:
        return run()
    except Disabled as refusal:
        raise Snooze(DISABLED_SNOOZE_SECONDS) from refusal
    except Refused as refusal:
        if refusal.reason == "wrong_state":  # done already (a person or an earlier run)
            return {
                "message_id": message_id,
                "outcome": "wrong_state",
                "state": refusal.answer.get("state"),
            }
        raise Fail(f"{context.job.kind} of message {message_id}: {refusal.reason}") from refusal


def classify_handler(classifier: Classifier, actor: str) -> Callable[[JobContext], JsonObject]:
    def classify(context: JobContext) -> JsonObject:
        message_id = _message_id(context)
        mail = _mail(context, message_id)
        label = str(_ask(context, message_id, classifier, mail))
        answer = _store(
            context, message_id, lambda: store.classify(context.conn, message_id, label, actor)
        )
        return {
            "message_id": message_id,
            "classification": answer.get("classification", label),
            "outcome": answer.get("outcome", "classified"),
        }

    return classify


def draft_handler(drafter: Drafter, actor: str) -> Callable[[JobContext], JsonObject]:
    def draft(context: JobContext) -> JsonObject:
        message_id = _message_id(context)
        mail = _mail(context, message_id)
        proposed = _ask(context, message_id, drafter, mail)
        if not isinstance(proposed, Draft):
            raise Fail(
                f"{context.job.kind} of message {message_id}: the drafter returned "
                f"{type(proposed).__name__}, not a Draft"
            )
        answer = _store(
            context,
            message_id,
            lambda: store.draft(context.conn, message_id, proposed.subject, proposed.text, actor),
        )
        return {
            "message_id": message_id,
            "draft_sha256": answer.get("draft_sha256"),
            "state": answer.get("state"),
            "outcome": answer.get("outcome", "drafted"),
        }

    return draft


def register(
    registry: Registry,
    *,
    classifier: Classifier = rule_classifier,
    drafter: Drafter = template_drafter,
    actor: str = "conveyor",
) -> None:
    """Add the classify and draft handlers (with your *classifier* / *drafter*) to *registry*."""
    registry.handler(CLASSIFY_KIND, transactional=True)(classify_handler(classifier, actor))
    registry.handler(DRAFT_KIND, transactional=True)(draft_handler(drafter, actor))


registry = Registry()
register(registry)
