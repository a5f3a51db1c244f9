"""conveyor: a job substrate that lives inside PostgreSQL.

SQL is the API (``conveyor.fn_job_*``); this package wraps it thinly, runs the phase
governance, and provides the CLI.
"""

from conveyor.db import connect
from conveyor.errors import (
    ConfigError,
    ConveyorError,
    Disabled,
    GateFailed,
    InvalidInput,
    LeaseLost,
    PhaseError,
    PhaseOrderError,
    Refused,
)
from conveyor.jobs import (
    ClaimedJob,
    cancel,
    claim,
    complete,
    enqueue,
    enqueue_many,
    extend_lease,
    fail_permanent,
    fail_transient,
)

__all__ = [
    "ClaimedJob",
    "ConfigError",
    "ConveyorError",
    "Disabled",
    "GateFailed",
    "InvalidInput",
    "LeaseLost",
    "PhaseError",
    "PhaseOrderError",
    "Refused",
    "cancel",
    "claim",
    "complete",
    "connect",
    "enqueue",
    "enqueue_many",
    "extend_lease",
    "fail_permanent",
    "fail_transient",
]
