"""Run `conveyor …` as a subprocess, exactly as a user types it (no database URL inherited)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

UNREACHABLE = "postgresql://u:sentinel-pw@127.0.0.1:1/x"


def conveyor(
    *args: str,
    url: str | None,
    timeout: float = 120,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
    env_name: str = "CONVEYOR_DATABASE_URL",
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with *url* in *env_name* (None: no URL, the embedded server)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CONVEYOR_DATABASE_URL", "DATABASE_URL", "CONVEYOR_TEST_DATABASE_URL"}
    }
    env["COLUMNS"] = "200"
    if url is not None:
        env[env_name] = url
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
