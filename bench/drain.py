#!/usr/bin/env python3
"""No-op drain throughput of conveyor: at concurrency 1, and at the best setting of a small sweep.

Each measurement is one run of ``adapter.py --scenario drain`` (beside this file) in its own
process, exactly as the side-by-side harness runs it, so the figures are comparable with its
RESULTS.md. Usage:

    .venv/bin/python bench/drain.py --dsn postgresql://bench:bench@127.0.0.1:5432/bench
    .venv/bin/python bench/drain.py --dsn … --processes 2 --concurrency 64 --batch 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADAPTER = Path(__file__).resolve().parent / "adapter.py"

# (processes, concurrency, batch): the worker claims min(batch, free slots), so a batch above the
# concurrency changes nothing; the grid stays within 1 or 2 processes and concurrency ≤ 64.
SERIAL = (1, 1, 1)
SWEEP = [
    (p, c, b)
    for p in (1, 2)
    for c, b in ((2, 2), (8, 8), (16, 16), (32, 10), (32, 32), (64, 10), (64, 32), (64, 64))
]


@dataclass(frozen=True, slots=True)
class Setting:
    processes: int
    concurrency: int
    batch: int

    def __str__(self) -> str:
        return f"{self.processes} proc x {self.concurrency} slots, batch {self.batch}"


@dataclass(frozen=True, slots=True)
class Measurement:
    setting: Setting
    jobs_per_s: float | None
    seconds: float | None
    verified: bool
    error: str | None


def measure(
    dsn: str, setting: Setting, jobs: int, timeout: float, extra: Sequence[str] = ()
) -> Measurement:
    """One drain run of the adapter in a fresh process; its JSON line turned into a row.

    *extra*: more adapter arguments (bench/limits.py: ``--keys K``)."""
    command = [
        sys.executable,
        str(ADAPTER),
        "--dsn",
        dsn,
        "--scenario",
        "drain",
        "--jobs",
        str(jobs),
        "--processes",
        str(setting.processes),
        "--concurrency",
        "1",
        "--slots",
        str(setting.concurrency),
        "--batch",
        str(setting.batch),
        "--timeout",
        str(timeout),
        *extra,
    ]
    result = run_adapter(command, timeout + 120)
    return Measurement(
        setting=setting,
        jobs_per_s=result.get("jobs_per_s"),
        seconds=result.get("seconds"),
        verified=bool(result.get("verified")),
        error=result.get("error") or (result.get("errors") or [None])[0],
    )


def run_adapter(command: list[str], timeout: float) -> dict[str, Any]:
    """Run the adapter and return its last JSON line (or an error answer)."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"verified": False, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"verified": False, "error": f"no JSON line (exit {completed.returncode}): {tail}"}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def install(dsn: str) -> None:
    """Apply phases 0-3 and switch the substrate on (the adapter's install scenario)."""
    answer = run_adapter(
        [sys.executable, str(ADAPTER), "--dsn", dsn, "--scenario", "install"], timeout=300
    )
    if not answer.get("verified"):
        sys.exit(f"install failed: {answer.get('error')}")


def table(rows: list[Measurement]) -> str:
    """A plain-text table, one row per run."""
    lines = [f"{'setting':<36} {'jobs/s':>9} {'seconds':>8}  verified", "-" * 66]
    for row in rows:
        rate = f"{row.jobs_per_s:,.0f}" if row.jobs_per_s is not None else "-"
        seconds = f"{row.seconds:.2f}" if row.seconds is not None else "-"
        note = "yes" if row.verified else f"NO ({(row.error or '?').strip()[:60]})"
        lines.append(f"{row.setting!s:<36} {rate:>9} {seconds:>8}  {note}")
    return "\n".join(lines)


def median_rate(rows: list[Measurement]) -> float | None:
    rates = [r.jobs_per_s for r in rows if r.verified and r.jobs_per_s is not None]
    return statistics.median(rates) if rates else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="database to use (its jobs are truncated)")
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--reps", type=int, default=3, help="runs of concurrency 1 and the best")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    install(args.dsn)
    chosen = (args.processes, args.concurrency, args.batch)
    if any(value is not None for value in chosen):
        candidates = [
            Setting(args.processes or 1, args.concurrency or 1, args.batch or args.concurrency or 1)
        ]
    else:
        candidates = [Setting(*s) for s in SWEEP]

    serial = Setting(*SERIAL)
    runs = [measure(args.dsn, serial, args.jobs, args.timeout) for _ in range(args.reps)]
    sweep = [measure(args.dsn, s, args.jobs, args.timeout) for s in candidates]
    print(f"conveyor no-op drain, {args.jobs:,} jobs per run\n", flush=True)
    print(table(runs + sweep), flush=True)

    verified = [m for m in sweep if m.verified and m.jobs_per_s is not None]
    if not verified:
        print("\nno verified run among the candidates")
        return 1
    best = max(verified, key=lambda m: m.jobs_per_s or 0.0).setting
    confirm = [measure(args.dsn, best, args.jobs, args.timeout) for _ in range(args.reps - 1)]
    if confirm:
        print("\nbest setting again:\n" + table(confirm))
    best_runs = [m for m in sweep if m.setting == best] + confirm
    serial_rate, best_rate = median_rate(runs), median_rate(best_runs)
    print(
        f"\nconcurrency 1 ({serial}): {serial_rate or 0:,.0f} jobs/s (median of {len(runs)})"
        f"\nbest ({best}): {best_rate or 0:,.0f} jobs/s (median of {len(best_runs)})"
    )
    all_runs = runs + sweep + confirm
    return 0 if all(m.verified for m in all_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
