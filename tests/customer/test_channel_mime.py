"""Inbound MIME parsing: odd mail becomes problems, never an exception."""

from __future__ import annotations

from conveyor.customer import mime

HEAD = (
    b"From: Ann Customer <ann@example.org>\r\nTo: support@example.com, b@example.com\r\n"
    b"Cc: c@example.com\r\nReply-To: ann.reply@example.org\r\n"
    b"Subject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\n"
    b"Message-ID: <m1@example.org>\r\nIn-Reply-To: <m0@example.com>\r\n"
    b"References: <a@x> <m0@example.com>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
)


def test_headers_and_both_bodies() -> None:
    raw = HEAD + (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf\xc3\xa9</p>\r\n--b--\r\n"
    )
    parsed = mime.parse(raw)
    assert parsed.subject == "Résumé"
    assert parsed.from_address == "ann@example.org"
    assert parsed.to_addresses == ["support@example.com", "b@example.com"]
    assert parsed.cc_addresses == ["c@example.com"]
    assert parsed.reply_to == "ann.reply@example.org"
    assert parsed.message_id == "<m1@example.org>"
    assert parsed.in_reply_to == "<m0@example.com>"
    assert parsed.references == "<a@x> <m0@example.com>"
    assert parsed.text_body is not None and parsed.text_body.strip() == "café"
    assert parsed.html_body is not None and "café" in parsed.html_body
    assert parsed.date is not None and parsed.date.year == 2026
    assert parsed.problems == [] and parsed.raw_size == len(raw)


def test_unknown_charset_is_replacement_decoded_with_a_problem() -> None:
    raw = HEAD + b"Content-Type: text/plain; charset=x-klingon\r\n\r\nhello \xff there\r\n"
    parsed = mime.parse(raw)
    assert parsed.text_body is not None and "hello" in parsed.text_body
    assert "unknown_charset:x-klingon" in parsed.problems


def test_oversized_is_truncated_with_a_problem() -> None:
    raw = HEAD + b"Content-Type: text/plain\r\n\r\n" + b"x" * 5000
    parsed = mime.parse(raw[:3000], raw_size=len(raw), max_bytes=2048)
    assert "oversized" in parsed.problems
    assert parsed.raw_size == len(raw)
    assert parsed.text_body is not None and len(parsed.text_body) < 2048


def _nested(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ndeep inside\r\n"
    for level in range(depth):
        boundary = f"n{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary
            + b"\r\n" + body + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    return HEAD + body


def test_deep_nesting_stops_at_the_limit() -> None:
    parsed = mime.parse(_nested(40), max_depth=10)
    assert "nesting_too_deep" in parsed.problems
    assert parsed.text_body is None
    shallow = mime.parse(_nested(3), max_depth=10)
    assert shallow.problems == [] and shallow.text_body is not None
    assert "deep inside" in shallow.text_body


def test_very_deep_nesting_does_not_crash() -> None:
    parsed = mime.parse(_nested(3000))
    assert "nesting_too_deep" in parsed.problems
    assert parsed.subject == "Résumé"


def test_malformed_part_and_garbage() -> None:
    raw = HEAD + (b'Content-Type: multipart/mixed; boundary="never"\r\n\r\nno boundary ever\r\n')
    assert "malformed_part" in mime.parse(raw).problems
    broken = (
        HEAD + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!%%%\r\n"
    )
    assert mime.parse(broken).text_body is not None
    junk = mime.parse(b"\x00\xff\xfe not a message at all \x00")
    assert junk.message_id is None
    assert mime.parse(b"").to_addresses == []


def test_nul_and_undecodable_bytes_are_storable() -> None:
    raw = HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\nnul\x00byte \xed\xa0\x80 end\r\n"
    parsed = mime.parse(raw)
    assert parsed.text_body is not None and "\x00" not in parsed.text_body
    parsed.text_body.encode("utf-8")  # no lone surrogates
