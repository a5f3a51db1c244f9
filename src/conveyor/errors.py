"""Exceptions conveyor raises on purpose.

ConveyorError
├── ConfigError          the environment or a setting is wrong; names it and the fix
├── EmbeddedServerError  the embedded PostgreSQL could not be started or reached
├── Refused              a gated SQL function said no and changed nothing (.reason)
│   ├── Disabled         reason "<flag>_disabled": the phase's flag is off
│   └── LeaseLost        reason "lease_lost": reaped; another worker owns the job
├── InvalidInput         the database rejected an argument (SQLSTATE 22023 and kin)
├── PhaseError           plan/apply/rollback cannot proceed
│   ├── PhaseOrderError  a phase was asked for before (or after) one it depends on
│   └── DisciplineError  a migration file mixes DDL with DML, or touches a protected object
└── GateFailed           a verification gate item failed (.failures)
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg


class ConveyorError(Exception):
    """Base of every exception conveyor raises on purpose."""


class ConfigError(ConveyorError):
    """The environment or a setting is wrong."""


class EmbeddedServerError(ConveyorError):
    """The embedded PostgreSQL server could not be started or reached."""


class Refused(ConveyorError):
    """A gated SQL function refused and changed nothing."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.reason = str(answer.get("reason", "refused"))
        context = ", ".join(f"{k}={v}" for k, v in answer.items() if k not in {"refused", "reason"})
        super().__init__(f"refused: {self.reason}" + (f" ({context})" if context else ""))


class Disabled(Refused):
    """The flag (or switch) that gates the function is off; ``.flag`` names it when known."""

    # Fallback for answers that do not carry a "flag" key: the flag behind each reason.
    _FLAGS: ClassVar[dict[str, str]] = {
        "job_substrate_disabled": "queue.job_substrate.enabled",
        "lease_reaper_disabled": "queue.lease_reaper.enabled",
        "auto_instantiate_legacy_disabled": "iu.auto_instantiate.legacy_enabled",
        "heartbeat_disabled": "queue.heartbeat.enabled",
        "dispatch_disabled": "queue.dispatch.enabled",
    }
    # Switches that are not dot_config flags.
    _SWITCHES: ClassVar[dict[str, str]] = {
        "outbound_worker_disabled": (
            "run `UPDATE conveyor.iu_outbound_worker SET enabled = true WHERE name = '<worker>'` "
            "(e.g. in `conveyor db shell`)"
        ),
    }

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer)
        flag = answer.get("flag") or self._FLAGS.get(self.reason)
        self.flag: str | None = str(flag) if flag else None
        if self.flag is not None:
            how = f"switch it on with `conveyor config set {self.flag} true`"
        elif self.reason in self._SWITCHES:
            how = f"switch it on: {self._SWITCHES[self.reason]}"
        else:
            how = "see `conveyor config list` for the flags"
        self.args = (f"refused: {self.reason}; the feature is switched off: {how}",)


class LeaseLost(Refused):
    """The lease token no longer matches: the job was reaped or finished elsewhere."""


class InvalidInput(ConveyorError):
    """The database rejected an argument; the message names it and the limit."""


class PhaseError(ConveyorError):
    """A phase command cannot proceed."""


class PhaseOrderError(PhaseError):
    """A phase was asked for before a phase it depends on (or rolled back before a dependent)."""


class DisciplineError(PhaseError):
    """A migration file breaks the runner's discipline rules."""


class GateFailed(ConveyorError):
    """One or more items of a verification gate failed."""

    def __init__(self, phase: int, failures: list[tuple[str, str]]) -> None:
        self.phase = phase
        self.failures = failures
        items = "; ".join(f"{item}: {detail}" for item, detail in failures)
        super().__init__(f"phase {phase} gate failed {len(failures)} item(s): {items}")


# SQLSTATE → exception class for errors conveyor can explain better than psycopg.
_SQLSTATE_CLASSES: dict[str, type[ConveyorError]] = {
    "22023": InvalidInput,  # invalid_parameter_value
    "22P02": InvalidInput,  # invalid_text_representation
    "22003": InvalidInput,  # numeric_value_out_of_range
    "23514": InvalidInput,  # check_violation
}


def translate(error: psycopg.Error) -> Exception:
    """Return the conveyor exception for *error*, or *error* itself when none fits."""
    sqlstate = error.sqlstate or ""
    cls = _SQLSTATE_CLASSES.get(sqlstate)
    if cls is None:
        return error
    diag = error.diag
    message = diag.message_primary or str(error)
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    translated = cls(message)
    translated.__cause__ = error
    return translated
