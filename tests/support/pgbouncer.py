"""A real PgBouncer in transaction mode in front of the test server, on a free loopback port.

Started by the test (Debian's ``pgbouncer``; as the ``postgres`` user when run as root, since
PgBouncer refuses root), stopped at the end. Tests skip when the binary is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support.processes import free_port

__all__ = ["PGBOUNCER", "pgbouncer_in_front_of"]

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)


@contextmanager
def pgbouncer_in_front_of(dsn: str, *, pool_size: int = 3) -> Iterator[str]:
    """Yield a DSN that reaches ``dsn``'s database through PgBouncer (pool_mode = transaction)."""
    assert PGBOUNCER is not None
    target = conninfo_to_dict(dsn)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgsched-pgbouncer-"))
    (folder / "users.txt").write_text(f'"{target.get("user", "postgres")}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.get('host', '127.0.0.1')} port={target.get('port', 5432)}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}")
            time.sleep(0.05)
        yield make_conninfo(dsn, host="127.0.0.1", port=port)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
