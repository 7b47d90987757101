"""The README's workflow example runs as written: its Python block creates every shape, a real
in-process worker (pgsched.testing.drain) runs them, and each workflow ends finished."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsched.testing import drain

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Workflows", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's Workflows section"
    return match.group(1)


def test_the_readme_workflow_example_runs(
    dsn: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSCHED_DSN", dsn)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(_example(), "README.md", "exec"), namespace)
    app = namespace["app"]
    try:
        drain(app, timeout=120)
    finally:
        app.close()
    states = conn.execute("SELECT kind, state FROM pgsched.workflow_status ORDER BY id").fetchall()
    assert [s["kind"] for s in states] == ["chain", "group", "dag", "batch", "after"]
    assert {s["state"] for s in states} == {"finished"}
    report = conn.execute(
        "SELECT result FROM pgsched.jobs WHERE task = 'report' AND args ->> 'label' = 'chain'"
    ).fetchone()
    assert report is not None and report["result"].startswith("chain: [")
