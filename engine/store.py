"""The run store: one SQLite file (WAL) through sqlite-utils, parameterized SQL only.

Only the supervisor writes (runs are created through it). Readers (UI, CLI) open their own
connection per call, so nothing is shared between threads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlite_utils

SCHEMA_VERSION = 2
STATUSES = ("queued", "running", "succeeded", "failed", "stopped", "interrupted")
ACTIVE = ("queued", "running")

RUN_COLUMNS = {
    "id": str,
    "name": str,
    "task": str,
    "status": str,
    "backend": str,
    "params": str,
    "base_model": str,
    "run_dir": str,
    "pid": int,
    "pgid": int,
    "pid_started": float,
    "created_at": float,
    "started_at": float,
    "ended_at": float,
    "exit_code": int,
    "error": str,
    "key_metric_name": str,
    "key_metric": float,
    "step": int,
    "max_steps": int,
    "epoch": float,
    "parent_id": str,
    "stop_requested": int,
    "seq": int,
}


def _migrate_1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        RUN_COLUMNS, pk="id", not_null={"task", "status"}, defaults={"stop_requested": 0}, if_not_exists=True
    )
    db["metrics"].create(
        {"run_id": str, "step": int, "epoch": float, "name": str, "value": float, "time": float}, if_not_exists=True
    )
    db["metrics"].create_index(["run_id", "name", "step"], if_not_exists=True)


def _migrate_2(db: sqlite_utils.Database) -> None:
    db["runs"].create_index(["status"], if_not_exists=True)


MIGRATIONS = {1: _migrate_1, 2: _migrate_2}


class Store:
    """Runs and their per-step metrics in ``<data_dir>/trainpad.db``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        db.conn.execute("PRAGMA journal_mode=WAL")
        self._migrate(db)
        db.conn.close()

    def _db(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        return sqlite_utils.Database(conn)

    def _migrate(self, db: sqlite_utils.Database) -> None:
        version = db.conn.execute("PRAGMA user_version").fetchone()[0]
        for v in sorted(MIGRATIONS):
            if v > version:
                with db.conn:
                    MIGRATIONS[v](db)
                    db.conn.execute(f"PRAGMA user_version={int(v)}")

    @property
    def schema_version(self) -> int:
        db = self._db()
        try:
            return db.conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.conn.close()

    # --- writes (supervisor only) ---------------------------------------------------------

    def insert_run(self, row: dict[str, Any]) -> None:
        db = self._db()
        try:
            seq = db.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            with db.conn:
                db["runs"].insert({"created_at": time.time(), "status": "queued", "seq": seq, **row})
        finally:
            db.conn.close()

    def update_run(self, run_id: str, **fields: Any) -> None:
        db = self._db()
        try:
            with db.conn:
                db["runs"].update(run_id, fields)
        finally:
            db.conn.close()

    def add_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        db = self._db()
        try:
            with db.conn:
                db["metrics"].insert_all({"run_id": run_id, **r} for r in rows)
        finally:
            db.conn.close()

    def claim(self, run_id: str) -> bool:
        """Atomically move a queued run to running; False if it was not queued (someone else took it)."""
        db = self._db()
        try:
            with db.conn:
                cur = db.conn.execute(
                    "UPDATE runs SET status = 'running', started_at = ? WHERE id = ? AND status = 'queued'",
                    [time.time(), run_id],
                )
            return cur.rowcount == 1
        finally:
            db.conn.close()

    def clear_metrics(self, run_id: str) -> None:
        db = self._db()
        try:
            with db.conn:
                db.conn.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
        finally:
            db.conn.close()

    def delete_run(self, run_id: str) -> None:
        db = self._db()
        try:
            with db.conn:
                db.conn.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
                db.conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
        finally:
            db.conn.close()

    # --- reads ----------------------------------------------------------------------------

    def _query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        db = self._db()
        try:
            return list(db.query(sql, params or []))
        finally:
            db.conn.close()

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", [run_id])
        return _decode(rows[0]) if rows else None

    def list_runs(self, status: str | None = None, task: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if status:
            sql, args = sql + " AND status = ?", [*args, status]
        if task:
            sql, args = sql + " AND task = ?", [*args, task]
        return [_decode(r) for r in self._query(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit])]

    def runs_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        marks = ",".join("?" for _ in statuses)
        return [
            _decode(r)
            for r in self._query(f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY seq", list(statuses))
        ]

    def metrics(self, run_id: str, names: list[str] | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT step, epoch, name, value, time FROM metrics WHERE run_id = ?", [run_id]
        if names:
            sql += f" AND name IN ({','.join('?' for _ in names)})"
            args += names
        return self._query(sql + " ORDER BY step, rowid", args)

    def metric_names(self, run_id: str) -> list[str]:
        return [
            r["name"] for r in self._query("SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name", [run_id])
        ]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if row.get("params"):
        row["params"] = json.loads(row["params"])
    return row
