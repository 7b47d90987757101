"""Tasks that steer their own fate, report progress, beat their own lease or run in the process pool.

Run by real `pgsched worker` processes in tests/worker/test_control.py, test_progress.py and test_process_pool.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pgsched import Cancel, Discard, Pgsched, Retry, RetryPolicy, Snooze, current_job

app = Pgsched.from_env()

FAST_RETRY = RetryPolicy(base_seconds=0.05, max_seconds=0.2, jitter=0.0)


def _runs(directory: str) -> int:
    """Count this call in ``directory`` (one file per job); returns how many runs came before it."""
    path = Path(directory) / str(current_job().id)
    before = len(path.read_text()) if path.exists() else 0
    with open(path, "a") as f:
        f.write("x")
    return before


@app.task(max_attempts=5)
def snooze_once(directory: str, seconds: float = 0.2) -> str:
    if _runs(directory) == 0:
        raise Snooze(seconds, "the partner API is warming up")
    return f"attempt {current_job().attempt}"


@app.task(max_snoozes=2)
async def snooze_forever() -> None:
    raise Snooze(0)


@app.task(max_attempts=5, retry=FAST_RETRY)
def discard_it() -> None:
    raise Discard("the account was deleted")


@app.task(max_attempts=5, retry=FAST_RETRY)
async def cancel_it() -> Cancel:
    return Cancel("nobody needs this any more")  # returned, not raised: the same signal


@app.task(max_attempts=3, retry=FAST_RETRY)
def retry_after(directory: str, after: float) -> str:
    if _runs(directory) == 0:
        raise Retry(after=after, reason="429 Too Many Requests")
    return "done"


@app.task(max_attempts=3, retry=FAST_RETRY, retry_on=ConnectionError, dont_retry_on=(ConnectionRefusedError,))
def picky(error: str) -> None:
    raise {"reset": ConnectionResetError, "refused": ConnectionRefusedError, "value": ValueError}[error](error)


@app.task
def report_progress(steps: int, pause: float) -> int:
    job = current_job()
    for step in range(1, steps + 1):
        time.sleep(pause)
        job.progress(step / steps, f"step {step} of {steps}")
    return steps


@app.task(max_attempts=1)
def long_beating(seconds: float, every: float) -> str:
    """Runs ``seconds`` (several leases), beating its own lease every ``every`` seconds."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        current_job().heartbeat()
        time.sleep(every)
    return "finished"


@app.task(max_attempts=2)
def beats_then_hangs(directory: str, hang: float) -> str:
    """The first run beats once, then hangs without beating: the reaper must take it back."""
    if _runs(directory) == 0:
        current_job().heartbeat(1.0)
        time.sleep(hang)
        return "hung run finished"
    return "second run"


@app.task(executor="process")
def cpu_burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


@app.task(executor="process")
def child_pid() -> int:
    return os.getpid()


@app.task(executor="process", max_attempts=1)
def hog_memory(megabytes: int, hold: float) -> str:
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
    time.sleep(hold)
    return "survived"


@app.task(executor="process", max_attempts=1, timeout=5)
def sleep_in_child(directory: str, seconds: float) -> str:
    (Path(directory) / "pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    return "woke"


@app.task(executor="process", max_attempts=1)
def crash_child() -> None:
    os.kill(os.getpid(), 9)


@app.task(executor="process", max_attempts=3, retry=FAST_RETRY)
def snooze_in_child(directory: str) -> str:
    if _runs(directory) == 0:
        raise Snooze(0.1)
    return f"attempt {current_job().attempt}"


@app.task(executor="process")
def progress_in_child(steps: int) -> int:
    job = current_job()
    for step in range(1, steps + 1):
        job.heartbeat()
        job.progress(step / steps, f"child step {step}")
    return os.getpid()


@app.task(executor="process", max_attempts=1)
def wait_in_child(directory: str) -> str:
    (Path(directory) / "pid").write_text(str(os.getpid()))
    release = Path(directory) / "release"  # never written: the test kills this child by cancelling its job
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "woke"
