#!/usr/bin/env python3
"""Customer messages end to end (phase 7), measured — not a test.

Starts a private PostgreSQL (embedded, unless --database-url names a server where a database may
be created), Dovecot (IMAP + LMTP) and an aiosmtpd sink on loopback (tests/mailserver.py), applies
phases 0–7 with ``customer.approve_required`` off (auto-approval, the test configuration), starts
one ``conveyor channel run`` process, delivers N messages over LMTP in a burst and waits until
every reply arrived at the sink. Reports messages/s (first delivery → last reply) and p50/p99
from a message's delivery to its reply's arrival at the sink.

    .venv/bin/python bench/customer.py --messages 200 --concurrency 8 \
        --out bench/results/customer-YYYYMMDD.md
"""

from __future__ import annotations

import argparse
import email
import email.policy
import importlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from conveyor.phases import runner

HERE = Path(__file__).resolve().parent
FLAGS = (
    "queue.job_substrate.enabled",
    "queue.lease_reaper.enabled",
    "workflow.mot.enabled",
    "customer.channel.enabled",
)


def _database(admin_url: str) -> str:
    name = f"conveyor_bench_customer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(admin_url)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo("", **{k: str(v) for k, v in params.items() if v})
    with psycopg.connect(url, autocommit=True) as conn:
        for number in range(8):
            runner.ratify(conn, number, "bench")
            runner.apply(conn, number, "bench")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'false' WHERE key = 'customer.approve_required'"
        )
    return url


def _mail(n: int, message_id: str) -> bytes:
    return (
        f"From: Customer {n} <c{n}@example.org>\r\nTo: support@localhost\r\n"
        f"Subject: Question about invoice {n}\r\nMessage-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, my invoice {n} looks wrong. Could you check it?\r\n"
    ).encode()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    mailserver: Any = importlib.import_module("mailserver")
    base = Path(tempfile.mkdtemp(prefix="conveyor-bench-customer-"))
    base.chmod(0o755)  # the embedded server runs as its own system user
    server = None
    admin_url = args.database_url
    if admin_url is None:
        from conveyor.embedded import EmbeddedServer

        server = EmbeddedServer(base / "pgdata")
        server.start()
        admin_url = server.dsn
    mail = mailserver.MailServers.start()
    adapter = None
    try:
        url = _database(admin_url)
        sink = mail.sink()
        user = mail.add_user("bench")
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": url,
            "CONVEYOR_CHANNEL_ACCOUNT": user,
            "CONVEYOR_CHANNEL_IMAP_URL": mail.imap_url_for(user),
            "CONVEYOR_CHANNEL_SMTP_URL": f"smtp://{user}@127.0.0.1:{sink.port}",
            "CONVEYOR_CHANNEL_FROM": f"{user}@localhost",
            "CONVEYOR_CHANNEL_PASSWORD": mail.password,
            "CONVEYOR_CHANNEL_ALLOW_PLAINTEXT": "loopback",
        }
        log = (base / "channel.log").open("wb")
        adapter = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "channel", "run", "--concurrency",
             str(args.concurrency), "--poll-interval", str(args.poll_interval)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(3)  # let it start (imports, phases check, IDLE)
        delivered: dict[str, float] = {}
        for n in range(args.messages):
            message_id = f"<bench-{n}-{uuid.uuid4().hex[:8]}@example.org>"
            delivered[message_id] = time.time()
            mail.deliver(_mail(n, message_id), user=user)
            if args.gap:
                time.sleep(args.gap)
        deadline = time.monotonic() + args.timeout
        while len(list(sink.directory.glob("*.eml"))) < args.messages:
            if time.monotonic() > deadline or adapter.poll() is not None:
                got = len(list(sink.directory.glob("*.eml")))
                raise SystemExit(f"only {got} replies; see {log.name}")
            time.sleep(0.05)
        latencies = []
        last = 0.0
        for path in sink.directory.glob("*.eml"):
            arrived = path.stat().st_mtime
            reply = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            latencies.append(arrived - delivered[str(reply["In-Reply-To"])])
            last = max(last, arrived)
        first = min(delivered.values())
        return {
            "messages": args.messages,
            "concurrency": args.concurrency,
            "gap": args.gap,
            "seconds": round(last - first, 2),
            "messages_per_second": round(args.messages / (last - first), 1),
            "p50_ms": round(statistics.median(latencies) * 1000),
            "p99_ms": round(_percentile(latencies, 99) * 1000),
            "max_ms": round(max(latencies) * 1000),
            "replies": len(latencies),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    finally:
        if adapter is not None:
            adapter.kill()
            adapter.wait(timeout=30)
        mail.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between deliveries")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--database-url", default=None, help="admin URL (default: embedded)")
    parser.add_argument("--out", type=Path, default=None, help="append a Markdown row here")
    args = parser.parse_args()
    result = run(args)
    print(result)
    if args.out is not None:
        command = " ".join(["bench/customer.py", *sys.argv[1:]])
        pace = f"one every {result['gap']} s" if result["gap"] else "burst"
        text = (
            f"- `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): "
            f"{result['messages']} messages ({pace}), concurrency {result['concurrency']}: "
            f"**{result['messages_per_second']} msg/s** ({result['seconds']} s), "
            f"delivery → reply at the sink p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
            f"max {result['max_ms']} ms; {result['cpus']} CPUs shared, Python {result['python']}\n"
        )
        with args.out.open("a") as out:
            out.write(text)


if __name__ == "__main__":
    main()
