"""A real PostgreSQL 15 server for the history tests and benchmark, started and stopped here.

``initdb`` refuses root: as root the server runs as the ``postgres`` user. It lives in a temporary
directory and listens on a unix socket only (``listen_addresses=''``); ``fsync=off`` because the
data is thrown away. Every wait has a deadline; the server is stopped and its directory removed
on the way out, whatever happened.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 60
PORT = 5432  # only names the socket file, which sits in this server's own directory
SUPERUSER = "harness"


def _as_server_user() -> dict:
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run(args: list[str], timeout: float, **kwargs) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout)[-2000:]}")


class PostgresServer:
    def __init__(self, root: Path):
        self.root = root
        self.socket_dir = root / "socket"
        self._names = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"

    def new_database(self, prefix: str = "history") -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    missing = [tool for tool in ("initdb", "pg_ctl") if not (PG_BIN / tool).exists()]
    if missing:
        raise RuntimeError(f"PostgreSQL 15 server binaries missing in {PG_BIN}: install the "
                           "`postgresql` package (make test does)")
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    server = PostgresServer(root)
    data, log = root / "data", root / "server.log"
    server.socket_dir.mkdir()
    user = _as_server_user()
    if user:
        for path in (root, server.socket_dir):
            os.chown(path, user["user"], user["group"])
    started = False
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--no-sync", "--no-instructions"], START_TIMEOUT_S, **user)
        options = (f"-k {server.socket_dir} -p {PORT} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
              "-t", str(START_TIMEOUT_S), "start"], START_TIMEOUT_S + 10, **user)
        started = True
        yield server
    finally:
        if started:
            try:
                _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t",
                      str(START_TIMEOUT_S), "stop"], START_TIMEOUT_S + 10, **user)
            except (RuntimeError, subprocess.TimeoutExpired):
                pid_file = data / "postmaster.pid"  # last resort: the postmaster this started
                if pid_file.exists():
                    os.kill(int(pid_file.read_text().split()[0]), 9)
        shutil.rmtree(root, ignore_errors=True)
