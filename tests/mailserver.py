"""Real mail servers on loopback for the channel tests: a private Dovecot (IMAP + LMTP) and an
aiosmtpd SMTP sink, each on a free port in its own temp dir, stopped by PID.

`MailServers.start()` writes a standalone dovecot.conf (never /etc/dovecot; see
../shared/ENVIRONMENT.md, "Loopback mail servers"), starts `dovecot -c` and a sink process. The
sink saves every accepted message as DIR/sink/<n>.eml and logs each connection to
DIR/sink/connections.log; its *mode* chooses how DATA ends:

- ``accept``: 250 after DATA (the normal case);
- ``drop``: read DATA, then close the connection before any reply (outcome unknown);
- ``stall``: read DATA, save it, then never answer (for a kill -9 right after DATA).

`deliver()` puts a message into a mailbox over LMTP, as an MTA would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.customer.accounts import Account

DOVECOT = "/usr/sbin/dovecot"
USER = "test"
ADDRESS = "test@localhost"

_SINK = r"""
import asyncio, sys, pathlib, logging
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
import warnings
warnings.filterwarnings("ignore")
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
out, port, mode = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
user, password = sys.argv[4], sys.argv[5]
counter = [0]

def note(text):
    with (out / "connections.log").open("a") as f:
        f.write(text + "\n")

class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        note("connect")
        session.host_name = hostname
        return responses
    async def handle_DATA(self, server, session, envelope):
        counter[0] += 1
        name = out / f"{counter[0]:05d}.eml"
        name.write_bytes(envelope.original_content or envelope.content)
        if mode == "drop":
            note("data-drop")
            server.transport.close()
            return "421 dropping"
        if mode == "stall":
            note("data-stall")
            await asyncio.sleep(3600)
        note("data-accept")
        return "250 OK queued as " + name.stem

def auth(server, session, envelope, mechanism, data):
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    ok = isinstance(data, LoginPassword) and text(data.password) == password  # any user
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

controller = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=auth,
                        auth_require_tls=False, auth_required=True,
                        auth_exclude_mechanism=["LOGIN"])
controller.start()
(out / "ready").write_text("ok")
try:
    asyncio.new_event_loop().run_forever()
finally:
    controller.stop()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dovecot_conf(base: Path, imap_port: int, lmtp_port: int) -> str:
    return f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = conveyor-test-{imap_port}
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
auth_failure_delay = 0 secs
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{base}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={base}/mail/%u
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.02)


@dataclass
class Sink:
    """An aiosmtpd SMTP server in its own process, saving what it accepts under *directory*."""

    directory: Path
    port: int
    mode: str
    password: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sink:
        self.directory.mkdir(parents=True, exist_ok=True)
        script = self.directory.parent / "sink.py"
        script.write_text(_SINK)
        log_path = self.directory.parent / f"sink-{self.port}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(script), str(self.directory), str(self.port), self.mode,
                 USER, self.password],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (self.directory / "ready").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP sink did not start: see {log_path}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.glob("*.eml"))]

    def connections(self) -> list[str]:
        log = self.directory / "connections.log"
        return log.read_text().split() if log.exists() else []


@dataclass
class MailServers:
    """Dovecot (IMAP + LMTP) plus sinks; `url`s and the password for the one test user."""

    base: Path
    password: str = "sentinel-mail-pw-7f3a"
    imap_port: int = 0
    lmtp_port: int = 0
    sinks: list[Sink] = field(default_factory=list)
    _users_changed: int = 0

    @classmethod
    def start(cls) -> MailServers:
        base = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # short: socket paths < 108 bytes
        servers = cls(base)
        try:
            servers._start_dovecot()
        except BaseException:
            servers.stop()
            raise
        return servers

    def _start_dovecot(self) -> None:
        os.chmod(self.base, 0o755)
        for name in ("run", "state", "mail"):
            (self.base / name).mkdir()
        os.chmod(self.base / "mail", 0o777)
        (self.base / "users").write_text(f"{USER}:{{PLAIN}}{self.password}\n")
        self.imap_port, self.lmtp_port = free_port(), free_port()
        conf = self.base / "dovecot.conf"
        conf.write_text(_dovecot_conf(self.base, self.imap_port, self.lmtp_port))
        with (self.base / "dovecot-start.log").open("wb") as log:  # no pipes: it daemonizes
            subprocess.run(
                [DOVECOT, "-c", str(conf)],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=30,
            )
        _wait_port(self.imap_port)
        _wait_port(self.lmtp_port)

    def add_user(self, name: str) -> str:
        """Another mailbox owner (same password); Dovecot rereads the users file when it changes."""
        users = self.base / "users"
        with users.open("a") as file:
            file.write(f"{name}:{{PLAIN}}{self.password}\n")
        # Dovecot rereads the file when its mtime changes: two additions within one mtime tick
        # would leave the second user unknown, so move the mtime on and wait for the login.
        self._users_changed += 1
        stamp = time.time() + self._users_changed
        os.utime(users, (stamp, stamp))
        deadline = time.monotonic() + 20
        while True:
            try:
                with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=5) as client:
                    client.login(name, self.password)
                    client.logout()
                return name
            except (imaplib.IMAP4.error, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def sink(self, mode: str = "accept") -> Sink:
        """Start another SMTP sink (*mode* accept | drop | stall) on a free port."""
        port = free_port()
        sink = Sink(self.base / f"sink{len(self.sinks)}", port, mode, self.password).start()
        self.sinks.append(sink)
        return sink

    @property
    def imap_url(self) -> str:
        return f"imap://{USER}@127.0.0.1:{self.imap_port}"

    @staticmethod
    def smtp_url(sink: Sink) -> str:
        return f"smtp://{USER}@127.0.0.1:{sink.port}"

    def imap_url_for(self, user: str) -> str:
        return f"imap://{user}@127.0.0.1:{self.imap_port}"

    def deliver(self, raw: bytes, mailbox: str = "INBOX", *, user: str = USER) -> None:
        """Deliver *raw* to *user*: into INBOX over LMTP, as an MTA would; into another
        *mailbox* over IMAP APPEND (user+mailbox addressing is not configured)."""
        if mailbox != "INBOX":
            import imap_tools

            with imap_tools.MailBoxUnencrypted("127.0.0.1", self.imap_port).login(
                user, self.password, initial_folder=None
            ) as box:
                box.append(raw, mailbox)
            return
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail("customer@example.org", [user], raw)

    def stop(self) -> None:
        for sink in self.sinks:
            sink.stop()
        pid_file = self.base / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (PID 1 reaps lazily here) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def make_account(mail: MailServers, sink: Sink, user: str = USER) -> Account:
    """A conveyor.customer Account of *user* on these servers (plaintext: loopback only)."""
    from conveyor.customer import accounts

    return accounts.account(
        user,
        {
            "imap_url": mail.imap_url_for(user),
            "smtp_url": f"smtp://{user}@127.0.0.1:{sink.port}",
            "from_address": f"{user}@localhost",
            "password_env": "X_TEST_MAIL_PASSWORD",
            "allow_plaintext": "loopback",
        },
        "test account",
        {"X_TEST_MAIL_PASSWORD": mail.password},
    )


def with_smtp(account: Account, sink: Sink) -> Account:
    """*account* sending to *sink* instead."""
    return dataclasses.replace(account, smtp=dataclasses.replace(account.smtp, port=sink.port))
