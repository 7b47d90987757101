"""The wheel ships sql/ and migrations/ inside the package, and the code finds them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
