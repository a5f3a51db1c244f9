"""Mail account configuration: TLS by default, plaintext only to loopback when asked, and the
password never in a repr or an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.customer import accounts
from conveyor.errors import ConfigError

SECRET = "pw-sentinel-3c9d1e"


def _env(**extra: str) -> dict[str, str]:
    env = {
        "CONVEYOR_CHANNEL_IMAP_URL": "imaps://support@imap.example.org",
        "CONVEYOR_CHANNEL_SMTP_URL": "smtp+starttls://support@smtp.example.org",
        "CONVEYOR_CHANNEL_FROM": "support@example.org",
        "CONVEYOR_CHANNEL_PASSWORD": SECRET,
    }
    env.update(extra)
    return env


def test_env_account_defaults_to_tls_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_CHANNEL_PASSWORD", SECRET)
    [account] = accounts.load(env=_env())
    assert (account.imap.security, account.imap.port) == ("tls", 993)
    assert (account.smtp.security, account.smtp.port) == ("starttls", 587)
    assert account.mailboxes == ("INBOX",)
    assert account.password == SECRET
    assert SECRET not in repr(account) and SECRET not in str(account.imap)


@pytest.mark.parametrize(
    "url", ["imap://support@imap.example.org", "imap://support@127.0.0.1:1143"]
)
def test_plaintext_is_refused_without_the_loopback_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="plaintext"):
        accounts.load(env=_env(CONVEYOR_CHANNEL_IMAP_URL=url))


def test_plaintext_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CHANNEL_PASSWORD", SECRET)
    env = _env(
        CONVEYOR_CHANNEL_IMAP_URL="imap://u@127.0.0.1:1143",
        CONVEYOR_CHANNEL_SMTP_URL="smtp://u@localhost:2525",
        CONVEYOR_CHANNEL_ALLOW_PLAINTEXT="loopback",
    )
    [account] = accounts.load(env=env)
    assert account.imap.security == account.smtp.security == "plain"
    with pytest.raises(ConfigError, match="loopback host"):
        accounts.load(env={**env, "CONVEYOR_CHANNEL_IMAP_URL": "imap://u@mail.example.org"})


def test_a_password_in_the_url_is_refused_and_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        accounts.load(env=_env(CONVEYOR_CHANNEL_IMAP_URL=f"imaps://u:{SECRET}@imap.example.org"))
    assert SECRET not in str(caught.value)


def test_file_accounts_with_password_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    config = tmp_path / "accounts.toml"
    config.write_text(
        f"""
[accounts.sales]
imap_url = "imap+starttls://sales@imap.example.org"
mailboxes = ["INBOX", "Orders"]
smtp_url = "smtps://sales@smtp.example.org"
from_address = "sales@example.org"
password_file = "{secret_file}"
"""
    )
    [account] = accounts.load(config, env={})
    assert account.name == "sales" and account.mailboxes == ("INBOX", "Orders")
    assert (account.imap.security, account.imap.port) == ("starttls", 143)
    assert (account.smtp.security, account.smtp.port) == ("tls", 465)
    assert account.password == SECRET


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not toml [", "not valid TOML"),
        ("[other]\n", r"no \[accounts.NAME\]"),
        ('[accounts.a]\nimap_url = "imaps://u@h"\n', "smtp_url is required"),
        (
            '[accounts.a]\nimap_url = "pop3://u@h"\nsmtp_url = "smtps://u@h"\n'
            'from_address = "a@h"\npassword_env = "NOPE_NOT_SET_7"\n',
            "NOPE_NOT_SET_7 is not set",
        ),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, match: str) -> None:
    config = tmp_path / "accounts.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=match):
        accounts.load(config, env={})


def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="no mail account configured"):
        accounts.load(env={})
