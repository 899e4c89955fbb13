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

STATUSES = ("queued", "running", "succeeded", "failed", "stopped", "interrupted", "pruned")
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
# Added by migration 3: who queued the run (only that process holds its token), when a stop escalates to
# SIGKILL (any supervisor may do it), and how far events.jsonl has been ingested (any supervisor continues).
RUN_COLUMNS_3 = {
    "owner_pid": int,
    "owner_started": float,
    "needs_token": int,
    "kill_at": float,
    "events_offset": int,
}
# Added by migration 4: where a run executes beyond this machine's processes.
RUN_COLUMNS_4 = {"remote_job_id": str, "devices": str}
# Added by migration 5: who started the run (a login name on a shared instance; "" locally).
RUN_COLUMNS_5 = {"user": str}


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


def _migrate_3(db: sqlite_utils.Database) -> None:
    existing = set(db["runs"].columns_dict)
    for name, kind in RUN_COLUMNS_3.items():
        if name not in existing:
            db["runs"].add_column(name, kind)
    db.conn.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)")


def _migrate_4(db: sqlite_utils.Database) -> None:
    existing = set(db["runs"].columns_dict)
    for name, kind in RUN_COLUMNS_4.items():
        if name not in existing:
            db["runs"].add_column(name, kind)


def _migrate_5(db: sqlite_utils.Database) -> None:
    if "user" not in db["runs"].columns_dict:
        db["runs"].add_column("user", str)
    db["runs"].create_index(["user"], if_not_exists=True)


# Added by migration 6: jobs after training (exports, served endpoints; evaluations later), each linked to its run.
JOB_COLUMNS = {
    "id": str,
    "kind": str,
    "run_id": str,
    "user": str,
    "status": str,
    "args": str,
    "job_dir": str,
    "pid": int,
    "pid_started": float,
    "owner_pid": int,
    "owner_started": float,
    "created_at": float,
    "started_at": float,
    "ended_at": float,
    "exit_code": int,
    "error": str,
    "result": str,
    "stop_requested": int,
    "kill_at": float,
    "seq": int,
}


def _migrate_6(db: sqlite_utils.Database) -> None:
    db["jobs"].create(JOB_COLUMNS, pk="id", not_null={"kind", "status"}, if_not_exists=True)
    db["jobs"].create_index(["run_id"], if_not_exists=True)
    db["jobs"].create_index(["status"], if_not_exists=True)


# Added by migration 7: sweeps (engine.run.sweep), and each trial run's sweep, its searched values and a prune mark.
RUN_COLUMNS_7 = {"sweep_id": str, "trial": str, "prune_requested": int}
SWEEP_COLUMNS = {
    "id": str,
    "name": str,
    "task": str,
    "user": str,
    "status": str,
    "backend": str,
    "strategy": str,
    "pruner": str,
    "space": str,
    "base": str,
    "trials": int,
    "parallel": int,
    "budget_s": float,
    "submitted": int,
    "key_metric_name": str,
    "greater_is_better": int,
    "best_run_id": str,
    "error": str,
    "owner_pid": int,
    "owner_started": float,
    "needs_token": int,
    "stop_requested": int,
    "created_at": float,
    "ended_at": float,
    "seq": int,
}


def _migrate_7(db: sqlite_utils.Database) -> None:
    existing = set(db["runs"].columns_dict)
    for name, kind in RUN_COLUMNS_7.items():
        if name not in existing:
            db["runs"].add_column(name, kind)
    db["runs"].create_index(["sweep_id"], if_not_exists=True)
    db["sweeps"].create(SWEEP_COLUMNS, pk="id", not_null={"task", "status"}, if_not_exists=True)


MIGRATIONS = {1: _migrate_1, 2: _migrate_2, 3: _migrate_3, 4: _migrate_4, 5: _migrate_5, 6: _migrate_6}
MIGRATIONS[7] = _migrate_7

# Added by migration 8: evaluations (engine.eval): a model (a run, or a base model's path) on test data (its hash),
# with its metrics, per-example predictions file and settings. Written by the supervisor when an eval job succeeds.
EVALUATION_COLUMNS = {
    "id": str,
    "job_id": str,
    "user": str,
    "run_id": str,
    "model": str,
    "task": str,
    "data": str,
    "data_hash": str,
    "n_examples": int,
    "metrics": str,
    "key_metric_name": str,
    "key_metric": float,
    "greater_is_better": int,
    "predictions_path": str,
    "settings": str,
    "created_at": float,
    "seq": int,
}


def _migrate_8(db: sqlite_utils.Database) -> None:
    db["evaluations"].create(EVALUATION_COLUMNS, pk="id", not_null={"model", "task"}, if_not_exists=True)
    db["evaluations"].create_index(["run_id"], if_not_exists=True)
    db["evaluations"].create_index(["data_hash"], if_not_exists=True)


MIGRATIONS[8] = _migrate_8


class Store:
    """Runs and their per-step metrics in ``<data_dir>/trainpad.db``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        try:
            _retry_locked(lambda: db.conn.execute("PRAGMA journal_mode=WAL"))
            if db.conn.execute("PRAGMA user_version").fetchone()[0] < max(MIGRATIONS):
                _retry_locked(lambda: self._migrate(db))
        finally:
            db.conn.close()

    def _db(self) -> sqlite_utils.Database:
        # autocommit mode: every write below opens its own BEGIN IMMEDIATE transaction (no lock upgrades,
        # so concurrent processes wait on busy_timeout instead of failing with "database is locked")
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        return sqlite_utils.Database(conn)

    def _migrate(self, db: sqlite_utils.Database) -> None:
        """Apply missing migrations in one write transaction, re-reading the version inside it: safe when
        several processes open a new data folder at once."""
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            version = db.conn.execute("PRAGMA user_version").fetchone()[0]
            for v in sorted(MIGRATIONS):
                if v > version:
                    MIGRATIONS[v](db)
                    db.conn.execute(f"PRAGMA user_version={int(v)}")
            db.conn.execute("COMMIT")
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise

    def _write(self, fn: Any) -> Any:
        """Run ``fn(db)`` in one BEGIN IMMEDIATE transaction and return its result."""
        db = self._db()
        try:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.conn.execute("COMMIT")
                return result
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
        finally:
            db.conn.close()

    @property
    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0]["user_version"]

    # --- writes (supervisor only) ---------------------------------------------------------

    def insert_run(self, row: dict[str, Any]) -> int:
        """Insert a run with the next sequence number (unique even when processes insert at once)."""

        def insert(db: sqlite_utils.Database) -> int:
            seq = db.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            db["runs"].insert({"created_at": time.time(), "status": "queued", "seq": seq, **row})
            return seq

        return self._write(insert)

    def update_run(self, run_id: str, **fields: Any) -> None:
        self._write(lambda db: db["runs"].update(run_id, fields))

    def update_if(self, run_id: str, when: str, fields: dict[str, Any]) -> bool:
        """Update the run only while its status is ``when``; False when it had already moved on."""
        unknown = set(fields) - set(RUN_COLUMNS) - set(RUN_COLUMNS_3) - set(RUN_COLUMNS_4) - set(RUN_COLUMNS_5)
        unknown -= set(RUN_COLUMNS_7)
        if unknown:
            raise ValueError(f"unknown run columns {sorted(unknown)}")
        sets = ", ".join(f"[{k}] = ?" for k in fields)  # names checked above; values are parameters
        sql = f"UPDATE runs SET {sets} WHERE id = ? AND status = ?"
        return self._write(lambda db: db.conn.execute(sql, [*fields.values(), run_id, when]).rowcount == 1)

    def add_metrics(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._write(lambda db: db["metrics"].insert_all({"run_id": run_id, **r} for r in rows))

    def ingest(self, run_id: str, old_offset: int, new_offset: int, rows: list[dict[str, Any]], **fields: Any) -> bool:
        """Add metric rows and move the run's events offset from ``old_offset`` to ``new_offset`` atomically;
        False (nothing written) when another supervisor ingested those lines first."""

        def write(db: sqlite_utils.Database) -> bool:
            cur = db.conn.execute(
                "UPDATE runs SET events_offset = ? WHERE id = ? AND COALESCE(events_offset, 0) = ?",
                [new_offset, run_id, old_offset],
            )
            if cur.rowcount != 1:
                return False
            if rows:
                db["metrics"].insert_all({"run_id": run_id, **r} for r in rows)
            if fields:
                db["runs"].update(run_id, fields)
            return True

        return self._write(write)

    def claim(self, run_id: str, **fields: Any) -> bool:
        """Atomically move a queued run to running; False if it was not queued (someone else took it)."""
        return self.update_if(run_id, "queued", {"status": "running", "started_at": time.time(), **fields})

    def cancel_queued(self, run_id: str) -> bool:
        """A queued run becomes stopped; False when it had already started or ended."""
        return self.update_if(run_id, "queued", {"status": "stopped", "ended_at": time.time(), "stop_requested": 1})

    def delete_run(self, run_id: str) -> None:
        def delete(db: sqlite_utils.Database) -> None:
            db.conn.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
            db.conn.execute("DELETE FROM runs WHERE id = ?", [run_id])

        self._write(delete)

    def set_setting(self, key: str, value: str) -> None:
        self._write(
            lambda db: db.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
        )

    def setting(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM settings WHERE key = ?", [key])
        return rows[0]["value"] if rows else default

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

    def list_runs(
        self, status: str | None = None, task: str | None = None, limit: int = 500, user: str | None = None
    ) -> list[dict[str, Any]]:
        """Runs, newest first; ``user`` (not None): only that user's."""
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if user is not None:
            sql, args = sql + " AND COALESCE(user, '') = ?", [*args, user]
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

    # --- jobs (exports, endpoints; written by the supervisor only) -----------------------------

    def insert_job(self, row: dict[str, Any]) -> None:
        def insert(db: sqlite_utils.Database) -> None:
            seq = db.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db["jobs"].insert({"created_at": time.time(), "status": "queued", "stop_requested": 0, "seq": seq, **row})

        self._write(insert)

    def update_job_if(self, job_id: str, when: str, fields: dict[str, Any]) -> bool:
        """Update the job only while its status is ``when``; False when it had already moved on."""
        unknown = set(fields) - set(JOB_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job columns {sorted(unknown)}")
        sets = ", ".join(f"[{k}] = ?" for k in fields)  # names checked above; values are parameters
        sql = f"UPDATE jobs SET {sets} WHERE id = ? AND status = ?"
        return self._write(lambda db: db.conn.execute(sql, [*fields.values(), job_id, when]).rowcount == 1)

    def update_job(self, job_id: str, **fields: Any) -> None:
        self._write(lambda db: db["jobs"].update(job_id, fields))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", [job_id])
        return _decode_job(rows[0]) if rows else None

    def list_jobs(self, run_id: str | None = None, kind: str | None = None, *statuses: str) -> list[dict[str, Any]]:
        """Jobs in the order they were queued; only ``run_id``'s / ``kind``'s / with ``statuses`` when given."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if run_id is not None:
            sql, args = sql + " AND run_id = ?", [*args, run_id]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        if statuses:
            sql, args = sql + f" AND status IN ({','.join('?' for _ in statuses)})", [*args, *statuses]
        return [_decode_job(r) for r in self._query(sql + " ORDER BY seq", args)]

    def delete_jobs(self, run_id: str) -> None:
        self._write(lambda db: db.conn.execute("DELETE FROM jobs WHERE run_id = ?", [run_id]))

    # --- evaluations (engine.eval; written by the supervisor only) ----------------------------

    def finish_job_with_evaluation(self, job_id: str, fields: dict[str, Any], evaluation: dict[str, Any]) -> bool:
        """End a running job and record its evaluation in one transaction (both or neither); False when the job had
        already moved on."""
        unknown = (set(fields) - set(JOB_COLUMNS)) | (set(evaluation) - set(EVALUATION_COLUMNS))
        if unknown:
            raise ValueError(f"unknown job or evaluation columns {sorted(unknown)}")
        sets = ", ".join(f"[{k}] = ?" for k in fields)  # names checked above; values are parameters

        def write(db: sqlite_utils.Database) -> bool:
            cur = db.conn.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND status = 'running'", [*fields.values(), job_id]
            )
            if cur.rowcount != 1:
                return False
            seq = db.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM evaluations").fetchone()[0]
            db["evaluations"].insert({"created_at": time.time(), "seq": seq, **evaluation})
            return True

        return self._write(write)

    def list_evaluations(
        self, run_id: str | None = None, data_hash: str | None = None, user: str | None = None, task: str | None = None
    ) -> list[dict[str, Any]]:
        """Evaluations, newest first; only those of ``run_id`` / on ``data_hash`` / by ``user`` / of ``task``."""
        sql, args = "SELECT * FROM evaluations WHERE 1=1", []
        for column, value in (("run_id", run_id), ("data_hash", data_hash), ("task", task)):
            if value is not None:
                sql, args = sql + f" AND {column} = ?", [*args, value]  # column names are the literals above
        if user is not None:
            sql, args = sql + " AND COALESCE(user, '') = ?", [*args, user]
        return [_decode_evaluation(r) for r in self._query(sql + " ORDER BY seq DESC", args)]

    def get_evaluation(self, evaluation_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM evaluations WHERE id = ?", [evaluation_id])
        return _decode_evaluation(rows[0]) if rows else None

    def delete_evaluations(self, run_id: str) -> None:
        self._write(lambda db: db.conn.execute("DELETE FROM evaluations WHERE run_id = ?", [run_id]))

    # --- sweeps (engine.run.sweep; written by the supervisor only) -----------------------------

    def insert_sweep(self, row: dict[str, Any]) -> None:
        def insert(db: sqlite_utils.Database) -> None:
            seq = db.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM sweeps").fetchone()[0]
            defaults = {"created_at": time.time(), "status": "running", "submitted": 0, "stop_requested": 0}
            db["sweeps"].insert({**defaults, "seq": seq, **row})

        self._write(insert)

    def update_sweep(self, sweep_id: str, **fields: Any) -> None:
        self._write(lambda db: db["sweeps"].update(sweep_id, fields))

    def update_sweep_if(self, sweep_id: str, column: str, when: Any, fields: dict[str, Any]) -> bool:
        """Update the sweep only while ``column`` is ``when`` (its status, or how many trials it submitted)."""
        unknown = ({column} | set(fields)) - set(SWEEP_COLUMNS)
        if unknown:
            raise ValueError(f"unknown sweep columns {sorted(unknown)}")
        sets = ", ".join(f"[{k}] = ?" for k in fields)  # names checked above; values are parameters
        sql = f"UPDATE sweeps SET {sets} WHERE id = ? AND [{column}] = ?"
        return self._write(lambda db: db.conn.execute(sql, [*fields.values(), sweep_id, when]).rowcount == 1)

    def delete_sweep(self, sweep_id: str) -> None:
        self._write(lambda db: db.conn.execute("DELETE FROM sweeps WHERE id = ?", [sweep_id]))

    def get_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM sweeps WHERE id = ?", [sweep_id])
        return _decode_sweep(rows[0]) if rows else None

    def list_sweeps(self, *statuses: str, user: str | None = None) -> list[dict[str, Any]]:
        """Sweeps, newest first; only those with ``statuses`` / of ``user`` when given."""
        sql, args = "SELECT * FROM sweeps WHERE 1=1", []
        if statuses:
            sql, args = sql + f" AND status IN ({','.join('?' for _ in statuses)})", [*args, *statuses]
        if user is not None:
            sql, args = sql + " AND COALESCE(user, '') = ?", [*args, user]
        return [_decode_sweep(r) for r in self._query(sql + " ORDER BY seq DESC", args)]

    def sweep_runs(self, sweep_id: str) -> list[dict[str, Any]]:
        """A sweep's trial runs, in the order they were queued."""
        return [_decode(r) for r in self._query("SELECT * FROM runs WHERE sweep_id = ? ORDER BY seq", [sweep_id])]


def _decode_sweep(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for key in ("space", "base"):
        row[key] = json.loads(row[key]) if row.get(key) else ({} if key == "base" else [])
    return row


def _decode_evaluation(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for key in ("metrics", "settings"):
        row[key] = json.loads(row[key]) if row.get(key) else {}
    return row


def _decode_job(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for key in ("args", "result"):
        row[key] = json.loads(row[key]) if row.get(key) else {}
    return row


def _retry_locked(fn: Any, attempts: int = 50) -> Any:
    """Retry ``fn`` while SQLite says the database is locked (set-up statements that bypass busy_timeout)."""
    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or i == attempts - 1:
                raise
            time.sleep(0.05 + 0.01 * i)
    return None


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if row.get("params"):
        row["params"] = json.loads(row["params"])
    if row.get("trial"):  # a sweep trial's searched values
        row["trial"] = json.loads(row["trial"])
    return row
