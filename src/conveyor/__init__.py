"""conveyor: a job substrate that lives inside PostgreSQL.

SQL is the API (``conveyor.fn_job_*``); this package wraps it thinly, runs the phase
governance, and provides the CLI.
"""

from conveyor import aio
from conveyor.aio import aconnect
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
from conveyor.handlers import Fail, JobContext, Registry, Retry, Snooze
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
from conveyor.orchestrator import Orchestrator, OrchestratorConfig
from conveyor.worker import Worker, WorkerConfig

__all__ = [
    "ClaimedJob",
    "ConfigError",
    "ConveyorError",
    "Disabled",
    "Fail",
    "GateFailed",
    "InvalidInput",
    "JobContext",
    "LeaseLost",
    "Orchestrator",
    "OrchestratorConfig",
    "PhaseError",
    "PhaseOrderError",
    "Refused",
    "Registry",
    "Retry",
    "Snooze",
    "Worker",
    "WorkerConfig",
    "aconnect",
    "aio",
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
