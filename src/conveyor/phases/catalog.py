"""The catalog of phases 0–8 (DESIGN.md; 8 is its Limits section): numbers, names, flags, files."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from conveyor.errors import PhaseError

_SQL_ROOT = Path(str(resources.files("conveyor") / "sql"))

FILES = ("ddl.up", "data.up", "data.down", "ddl.down")


@dataclass(frozen=True, slots=True)
class Phase:
    """One migration phase: a pair of migrations (DDL, data) and a verification gate."""

    number: int
    slug: str
    title: str
    depends_on: tuple[int, ...]
    flags: tuple[str, ...]

    @property
    def directory(self) -> Path:
        return _SQL_ROOT / "phases" / f"{self.number}_{self.slug}"

    @property
    def implemented(self) -> bool:
        return (self.directory / "ddl.up.sql").is_file()

    def file(self, name: str) -> Path:
        """Path of one of the phase's files: ddl.up, data.up, data.down, ddl.down or gate."""
        return self.directory / f"{name}.sql"


PHASES: tuple[Phase, ...] = (
    Phase(0, "platform", "platform", (), ()),
    Phase(
        1,
        "job_substrate",
        "job substrate",
        (0,),
        ("queue.job_substrate.enabled", "queue.lease_reaper.enabled"),
    ),
    Phase(
        2,
        "retry_lease_dlq",
        "retry / lease / DLQ",
        (1,),
        ("queue.lease_reaper.enabled", "queue.retry.backoff_enabled"),
    ),
    Phase(
        3,
        "heartbeat_notify",
        "heartbeat + NOTIFY",
        (1,),
        ("queue.heartbeat.enabled", "queue.notify.bridge_enabled"),
    ),
    Phase(4, "dispatch", "trigger-in / trigger-out dispatch", (3,), ("queue.dispatch.enabled",)),
    Phase(5, "cut_pilot", "MARK/CUT pilot", (2, 4), ("pilot.cut.enabled",)),
    Phase(6, "mot_workflows", "MOT workflows", (4,), ("workflow.mot.enabled",)),
    Phase(
        7,
        "customer_messages",
        "customer messages",
        (6,),
        ("customer.channel.enabled", "customer.approve_required"),
    ),
    Phase(8, "limits", "concurrency and rate limits", (4,), ("queue.limits.enabled",)),
)


def get(number: int) -> Phase:
    """Return phase *number*, or raise PhaseError naming the valid range."""
    for phase in PHASES:
        if phase.number == number:
            return phase
    raise PhaseError(f"there is no phase {number}; phases are 0–{PHASES[-1].number}")


def dependents(number: int) -> list[Phase]:
    """Phases that depend directly on phase *number*."""
    return [phase for phase in PHASES if number in phase.depends_on]
