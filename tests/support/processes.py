"""Real pgsched processes for tests: started with stderr captured, stopped with SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
