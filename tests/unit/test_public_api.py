"""The package's public names are exactly the documented ones."""

import conveyor


def test_all_lists_exactly_the_public_api() -> None:
    assert sorted(conveyor.__all__) == sorted(
        [
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
    )
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name
