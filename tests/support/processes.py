"""Real pgsched processes for tests: started with stderr captured, stopped with SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_value(port: int, name: str) -> float | None:
    """The value of an unlabelled sample of a process's Prometheus endpoint on ``port`` (None when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        sample, _, value = line.partition(" ")
        if sample == name:
            return float(value)
    return None


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``argv`` in the repository root; its stderr is kept for ``stop``."""
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait, check the exit code is 0; returns everything it wrote on stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err
