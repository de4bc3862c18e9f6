"""One history store, two engines: an SQLite file (stdlib sqlite3) or a PostgreSQL database (psycopg 3).

Every query of the store is written once, with ``?`` placeholders and SQL both engines speak
(``INSERT ... ON CONFLICT DO NOTHING``, no engine-only functions); ``Connection`` hides what
differs: placeholders, the DDL's column types, how a writer excludes other writers, bulk loading.

Writers are serialised: SQLite by ``BEGIN IMMEDIATE`` (the file's write lock, waited for up to
``BUSY_TIMEOUT_S``), PostgreSQL by a transaction-scoped advisory lock, so that concurrent ingests
of different runs from several processes or agents each see the others' committed rows.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

BUSY_TIMEOUT_S = 30.0  # another ingest holding the write lock: wait this long, then fail
WRITER_LOCK_KEY = 0x68697374  # "hist": the advisory lock every PostgreSQL writer takes
URL_SCHEMES = ("postgresql://", "postgres://")
PAGE_SIZE = 16384  # bytes, of a new SQLite store


class StoreError(Exception):
    """The store is unusable (missing, not a history store, another schema); names it."""


def is_url(target: str | Path) -> bool:
    return str(target).startswith(URL_SCHEMES)


def shown_target(target: str | Path) -> str:
    """What messages may print: a path as is, a URL without its password."""
    text = str(target)
    if not is_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def target_from_env(name: str, environ: dict[str, str] | None = None) -> str:
    """The store named by an environment variable (a secret URL: read by name, never printed)."""
    environ = os.environ if environ is None else environ
    value = environ.get(name, "").strip()
    if not value:
        raise StoreError(f"${name}: not set (it should hold the history store: a "
                         "postgresql:// URL or a file path)")
    return value


class Connection:
    """A connection to either engine, with the few operations the store needs."""

    kind: str  # "sqlite" | "postgresql"
    errors: tuple[type[BaseException], ...]  # what a failing query raises

    def __init__(self, label: str):
        self.label = label

    # --- to be provided per engine -------------------------------------------------------
    def _cursor_execute(self, sql: str, params: Sequence[Any]) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def bulk_insert(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None: ...

    def _begin_write(self) -> None: ...

    def _begin_read(self) -> None: ...

    def table_names(self) -> set[str]: ...

    def close(self) -> None: ...

    # --- shared ----------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor_execute(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction, excluding other writers; rolled back on any exception."""
        self._begin_write()
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[None]:
        """One consistent snapshot: an ingest committing meanwhile is not seen."""
        self._begin_read()
        try:
            yield
        finally:
            self.execute("COMMIT")


class SqliteConnection(Connection):
    kind = "sqlite"
    errors = (sqlite3.DatabaseError,)
    ID = "INTEGER PRIMARY KEY"  # the rowid itself: the cheapest key SQLite has
    REAL = "REAL"
    TABLE_SUFFIX = ""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def setup(self) -> None:
        # 16 KiB pages for a new store (an existing one keeps its own: the pragma does nothing
        # once the file has pages). The store is mostly appended rows of ~600 bytes: a quarter
        # of the pages for SQLite to write, checksum and checkpoint than with 4 KiB ones, which
        # made storing a year a tenth faster; reads of a window of nights are contiguous.
        self.conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        # WAL: a dashboard reading does not block tonight's ingest, nor the other way round.
        # synchronous=FULL: in WAL mode every commit syncs the log before it returns, so a
        # night reported stored survives a power cut too (NORMAL may lose the last commits
        # then); it costs one fsync a night: nothing next to the night's rows.
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def _cursor_execute(self, sql, params):
        return self.conn.execute(sql, params)

    def executemany(self, sql, rows):
        self.conn.executemany(sql, rows)

    def bulk_insert(self, table, columns, rows):
        marks = ",".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", rows)

    def _begin_write(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def _begin_read(self):
        self.conn.execute("BEGIN")

    def table_names(self):
        return {name for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}

    def close(self):
        self.conn.close()


_PLACEHOLDER = re.compile(r"\?")


class PostgresConnection(Connection):
    kind = "postgresql"
    ID = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    REAL = "DOUBLE PRECISION"  # PostgreSQL's REAL is 4 bytes: timings would lose digits

    def __init__(self, url: str):
        import psycopg  # only stores given by URL need the driver loaded

        super().__init__(shown_target(url))
        self.errors = (psycopg.Error,)
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=int(BUSY_TIMEOUT_S))
        except psycopg.Error as exc:
            raise StoreError(f"{self.label}: cannot connect ({str(exc).strip()})") from None
        self._sql: dict[str, str] = {}

    def setup(self) -> None:
        self.conn.execute("SELECT set_config('lock_timeout', %s, false)",
                          (f"{int(BUSY_TIMEOUT_S * 1000)}ms",))

    def _convert(self, sql: str) -> str:
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = _PLACEHOLDER.sub("%s", sql)
        return found

    def _cursor_execute(self, sql, params):
        return self.conn.execute(self._convert(sql), params)

    def executemany(self, sql, rows):
        with self.conn.cursor() as cur:
            cur.executemany(self._convert(sql), list(rows))

    def bulk_insert(self, table, columns, rows):
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def _begin_write(self):
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))

    def _begin_read(self):
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def table_names(self):
        return {name for (name,) in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema()")}

    def close(self):
        self.conn.close()


def connect(target: str | Path, create: bool) -> Connection:
    """A connection to the store at ``target`` (a file path or a postgresql:// URL)."""
    if is_url(target):
        conn: Connection = PostgresConnection(str(target))
    else:
        path = Path(target)
        if not create and not path.is_file():
            raise StoreError(f"{path}: history store missing (run `harness ingest` first)")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = SqliteConnection(path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable SQLite history store ({exc})") from None
    return conn
