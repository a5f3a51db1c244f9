"""`conveyor channel check | run` as a user types them: one line per login, a nonzero exit on a
failure, one-line errors for a bad configuration, never a traceback or the password."""

from __future__ import annotations

from pathlib import Path

from cli.running import conveyor
from customer.channelsupport import Box


def test_check_logs_in_to_imap_and_smtp(box: Box, channel_dsn: str) -> None:
    result = conveyor("channel", "check", url=channel_dsn, extra_env=box.env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{box.user}: IMAP ok" in result.stdout
    assert f"{box.user}: SMTP ok" in result.stdout
    assert box.mail.password not in result.stdout + result.stderr


def test_check_fails_on_a_wrong_password_and_a_closed_port(
    box: Box, channel_dsn: str, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("wrong-sentinel-password\n")
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f"""
[accounts.bad]
imap_url = "{box.mail.imap_url_for(box.user)}"
smtp_url = "smtp://{box.user}@127.0.0.1:1"
from_address = "{box.user}@localhost"
password_file = "{secret}"
allow_plaintext = "loopback"
"""
    )
    result = conveyor("channel", "check", "--accounts", str(accounts), url=channel_dsn, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "bad: IMAP FAILED" in result.stdout and "login refused" in result.stdout
    assert "bad: SMTP FAILED" in result.stdout and "Connect" in result.stdout
    assert "Traceback" not in output
    assert "wrong-sentinel-password" not in output


def test_run_without_accounts_and_with_plaintext_elsewhere_are_one_line_errors(
    channel_dsn: str,
) -> None:
    result = conveyor("channel", "run", url=channel_dsn, timeout=120)
    assert result.returncode == 1
    assert "no mail account configured" in result.stderr
    assert "Traceback" not in result.stderr

    env = {
        "CONVEYOR_CHANNEL_IMAP_URL": "imap://u@mail.example.org",
        "CONVEYOR_CHANNEL_SMTP_URL": "smtps://u@mail.example.org",
        "CONVEYOR_CHANNEL_FROM": "u@example.org",
        "CONVEYOR_CHANNEL_PASSWORD": "pw-sentinel-cli",
    }
    result = conveyor("channel", "run", url=channel_dsn, extra_env=env, timeout=120)
    assert result.returncode == 1
    assert "plaintext imap:// is refused" in result.stderr
    assert "pw-sentinel-cli" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
