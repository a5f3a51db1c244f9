"""Worker "hosts" as network namespaces (root only): each joined to the host by a veth pair on a
/30 of its own, so cutting its link (the host side down) partitions exactly that host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import APPS


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"


def namespaces_work() -> str | None:
    """None when this process may create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    name = f"cvprobe{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if result.returncode != 0:
        return f"ip netns add failed: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class Host:
    """Namespace *name* with address 10.<net>.<index>.2, the host side 10.<net>.<index>.1."""

    def __init__(self, net: int, index: int) -> None:
        self.name = f"cv{os.getpid()}h{index}"
        self.outside = f"cv{os.getpid() % 100000}o{index}"  # interface names: 15 chars at most
        self.inside = f"cv{os.getpid() % 100000}i{index}"
        self.server_address = f"10.{net}.{index}.1"
        self.address = f"10.{net}.{index}.2"
        self.processes: list[subprocess.Popen[bytes]] = []

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        _ip("link", "set", self.inside, "netns", self.name)
        _ip("addr", "add", f"{self.server_address}/30", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.inside)
        _ip("-n", self.name, "link", "set", self.inside, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def cut(self) -> None:
        """Partition this host: packets stop both ways, no connection is reset."""
        _ip("link", "set", self.outside, "down")

    def restore(self) -> None:
        _ip("link", "set", self.outside, "up")

    def start(self, url: str, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
        """`python -m conveyor -v ARGS…` inside this namespace, CONVEYOR_DATABASE_URL *url*."""
        process = _conveyor(["ip", "netns", "exec", self.name], url, log_path, args)
        self.processes.append(process)
        return process

    @staticmethod
    def start_here(url: str, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
        """`python -m conveyor -v orchestrator --interval 0.5 ARGS…` in the host's namespace."""
        return _conveyor([], url, log_path, ("orchestrator", "--interval", "0.5", *args))

    def kill_processes(self) -> None:
        """Kill whatever this host still runs."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self.processes.clear()

    def destroy(self) -> None:
        self.kill_processes()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True)


def _conveyor(
    prefix: list[str], url: str, log_path: Path, args: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": url,
        "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "conveyor", "-v", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    return process
