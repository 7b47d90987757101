"""The wheel ships sql/ and migrations/ inside the package, and the code finds them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_contains_every_sql_and_migration_file(tmp_path: Path) -> None:
    if shutil.which("pip", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("pip is not in this environment")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("pgsched-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("sql", "migrations"):
        for path in (ROOT / folder).glob("*.sql"):
            assert f"pgsched/{folder}/{path.name}" in names


def test_the_package_leaves_the_libpq_build_to_the_application() -> None:
    """psycopg's advice for libraries: plain psycopg as the dependency, the binary build as an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    psycopg_deps = [d for d in project["dependencies"] if d.startswith("psycopg")]
    assert psycopg_deps and all(not d.startswith("psycopg[") for d in psycopg_deps if not d.startswith("psycopg-"))
    assert any(d.startswith("psycopg[binary]") for d in project["optional-dependencies"]["binary"])
