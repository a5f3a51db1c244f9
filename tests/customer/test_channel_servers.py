"""The IMAP and SMTP clients against real servers (Dovecot, aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import dataclasses

import imap_tools
import pytest

from conveyor.customer import channel, imap, mime, smtp
from conveyor.customer.accounts import Account
from mailserver import MailServers, Sink, make_account, with_smtp


def _raw(n: int, message_id: str | None = None) -> bytes:
    mid = message_id or f"<srv{n}@example.org>"
    return (
        f"From: c{n}@example.org\r\nTo: test@localhost\r\nSubject: s{n}\r\n"
        f"Message-ID: {mid}\r\n\r\nbody {n}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def account(mail: MailServers, sink: Sink) -> Account:
    return make_account(mail, sink)


def test_poll_by_uid_and_peek(mail: MailServers, account: Account) -> None:
    for n in range(3):
        mail.deliver(_raw(n))
    with imap.mailbox(account, "INBOX") as box:
        validity = imap.uidvalidity(box, "INBOX")
        uids = imap.new_uids(box, 0)
        assert len(uids) >= 3 and uids == sorted(uids)
        fetched = imap.fetch(box, uids, 1 << 20)
        assert [f.uid for f in fetched] == uids
        assert imap.new_uids(box, uids[-1]) == []  # "N:*" names the last one: filtered out
        assert mime.parse(fetched[0].raw).subject == "s0"
        assert imap.supports_idle(box)
        flags = box.client.uid("FETCH", str(uids[0]), "(FLAGS)")[1]
        assert b"\\Seen" not in flags[0]  # BODY.PEEK: nothing marked read
    with imap.mailbox(account, "INBOX") as box:
        assert imap.uidvalidity(box, "INBOX") == validity


def test_oversized_fetch_downloads_a_prefix(mail: MailServers, account: Account) -> None:
    big = _raw(99, "<big@example.org>") + b"y" * 300_000
    mail.deliver(big)
    with imap.mailbox(account, "INBOX") as box:
        uid = imap.new_uids(box, 0)[-1]
        [fetched] = imap.fetch(box, [uid], 4096)
    assert fetched.size > 300_000 and len(fetched.raw) <= 4097
    assert "oversized" in mime.parse(fetched.raw, raw_size=fetched.size, max_bytes=4096).problems


def test_recreated_folder_changes_uidvalidity(mail: MailServers, account: Account) -> None:
    with imap_tools.MailBoxUnencrypted("127.0.0.1", mail.imap_port).login(
        "test", mail.password, initial_folder=None
    ) as box:
        box.folder.create("Recreated")
    mail.deliver(_raw(50), "Recreated")
    with imap.mailbox(account, "Recreated") as box:
        first = imap.uidvalidity(box, "Recreated")
    with imap_tools.MailBoxUnencrypted("127.0.0.1", mail.imap_port).login(
        "test", mail.password, initial_folder=None
    ) as box:
        box.folder.delete("Recreated")
        box.folder.create("Recreated")
    mail.deliver(_raw(50), "Recreated")
    with imap.mailbox(account, "Recreated") as box:
        assert imap.uidvalidity(box, "Recreated") != first
        assert imap.new_uids(box, 0) == [1]


def test_idle_wakes_on_delivery(mail: MailServers, account: Account) -> None:
    with imap.mailbox(account, "INBOX") as box:
        with box.idle:
            mail.deliver(_raw(60))
            responses = box.idle.poll(timeout=20)
        assert any(b"EXISTS" in r for r in responses)


def test_wrong_password_and_unreachable_are_one_line(mail: MailServers, account: Account) -> None:
    wrong = dataclasses.replace(account, password="not-it")
    with pytest.raises(imap.MailServerError) as caught, imap.mailbox(wrong, "INBOX"):
        pass
    assert "login refused" in str(caught.value) and "not-it" not in str(caught.value)
    closed = dataclasses.replace(account, imap=dataclasses.replace(account.imap, port=1))
    with (
        pytest.raises(imap.MailServerError, match=r"IMAP imap://test@127\.0\.0\.1:1"),
        imap.mailbox(closed, "INBOX"),
    ):
        pass


def _message(account: Account) -> tuple[object, list[str]]:
    begin = {
        "to": ["ann@example.org"],
        "cc": ["bob@example.org"],
        "subject": "Re: s1",
        "text": "thank you",
        "message_id_header": "<send-1@conveyor.test>",
        "in_reply_to": "<srv1@example.org>",
        "references": "<srv0@example.org> <srv1@example.org>",
    }
    return channel.build(begin, account), ["ann@example.org", "bob@example.org"]


def test_send_sent(account: Account, sink: Sink) -> None:
    before = len(sink.messages())
    message, recipients = _message(account)
    outcome = asyncio.run(smtp.send(account, message, recipients))  # type: ignore[arg-type]
    assert outcome.state == "sent" and outcome.detail.startswith("250")
    received = sink.messages()[before:]
    assert len(received) == 1
    assert b"Message-ID: <send-1@conveyor.test>" in received[0]
    assert b"In-Reply-To: <srv1@example.org>" in received[0]
    assert b"References: <srv0@example.org> <srv1@example.org>" in received[0]


def test_send_dropped_before_250_is_unknown(mail: MailServers, account: Account) -> None:
    drop = mail.sink("drop")
    message, recipients = _message(account)
    outcome = asyncio.run(smtp.send(with_smtp(account, drop), message, recipients))  # type: ignore[arg-type]
    assert outcome.state == "unknown"
    assert len(drop.messages()) == 1  # the server had the content: never send it again


def test_send_failures_before_data_are_not_sent(account: Account, sink: Sink) -> None:
    message, recipients = _message(account)
    wrong = dataclasses.replace(account, smtp_password="not-it")
    outcome = asyncio.run(smtp.send(wrong, message, recipients))  # type: ignore[arg-type]
    assert outcome.state == "not_sent" and outcome.detail.startswith("535")
    assert "not-it" not in outcome.detail
    closed = dataclasses.replace(account, smtp=dataclasses.replace(account.smtp, port=1))
    outcome = asyncio.run(smtp.send(closed, message, recipients))  # type: ignore[arg-type]
    assert outcome.state == "not_sent"
    asyncio.run(smtp.check(account))
    with pytest.raises(imap.MailServerError, match="535"):
        asyncio.run(smtp.check(wrong))
