"""The statistics store: SQLite in WAL mode, written by one thread in batched transactions.

Rows are handed over with :meth:`StatsStore.add` (non-blocking); :meth:`close` writes everything handed over
before returning, so after a graceful shutdown the table holds one row per acknowledged item.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT,
    model TEXT,
    category TEXT NOT NULL,
    confidence REAL NOT NULL,
    confident INTEGER NOT NULL,
    language TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    user_region TEXT,
    model_version TEXT,
    source TEXT,
    text TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT,
    text TEXT,
    label TEXT NOT NULL,
    predicted TEXT,
    model_version TEXT,
    comment TEXT
);
"""

COLUMNS = ("ts", "request_id", "model", "category", "confidence", "confident", "language", "prompt_tokens",
           "completion_tokens", "user_region", "model_version", "source", "text")
GROUPS = {"category": "category", "language": "language", "model": "COALESCE(model, 'unknown')"}
BUCKETS = {
    "day": "date(ts, 'unixepoch')",
    "week": "date(ts, 'unixepoch', 'weekday 0', '-6 days')",  # the Monday starting the ISO week
    "all": "'all'",
}
WEIGHTS = {"requests": "1", "tokens": "COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)"}
_STOP = object()


def connect(path: str | Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=30000")
    return con


@dataclass
class StoreStats:
    written: int = 0
    transactions: int = 0


class StatsStore:
    def __init__(self, path: str | Path, *, batch_rows: int = 100, flush_ms: float = 200) -> None:
        self.path = Path(path)
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.batch_rows = batch_rows
        self.flush_s = flush_ms / 1000
        con = connect(self.path)
        con.executescript(SCHEMA)
        con.close()
        self.stats = StoreStats()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._accepted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._writer, name="stats-writer", daemon=True)
        self._thread.start()

    # -- writing ------------------------------------------------------------------------------------------
    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = [tuple(r.get(c) for c in COLUMNS) for r in rows]
        if rows:
            with self._lock:
                self._accepted += len(rows)
            self._q.put(rows)

    @property
    def backlog(self) -> int:
        return self._accepted - self.stats.written

    def close(self) -> None:
        """Write every row handed over so far, then stop the writer thread."""
        self._q.put(_STOP)
        self._thread.join()

    def _writer(self) -> None:
        con = connect(self.path)
        sql = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        pending: list[tuple] = []
        stop = False
        while not stop:
            deadline = None
            while len(pending) < self.batch_rows:
                try:
                    got = self._q.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if got is _STOP:
                    stop = True
                    break
                pending.extend(got)
                if deadline is None:
                    deadline = time.monotonic() + self.flush_s
            while pending:
                chunk, pending = pending[: self.batch_rows * 10], pending[self.batch_rows * 10 :]
                for attempt in range(100):
                    try:
                        with con:
                            con.executemany(sql, chunk)
                        break
                    except sqlite3.OperationalError:  # locked by another process beyond busy_timeout
                        if attempt == 99:
                            raise
                        time.sleep(0.1)
                self.stats.written += len(chunk)
                self.stats.transactions += 1
        con.close()

    def add_feedback(self, row: dict[str, Any]) -> int:
        con = connect(self.path)
        try:
            with con:
                cur = con.execute(
                    "INSERT INTO feedback (ts, request_id, text, label, predicted, model_version, comment) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), row.get("request_id"), row.get("text"), row["label"], row.get("predicted"),
                     row.get("model_version"), row.get("comment")))
            return int(cur.lastrowid or 0)
        finally:
            con.close()

    # -- reading ------------------------------------------------------------------------------------------
    def lookup(self, request_id: str) -> dict[str, Any] | None:
        con = connect(self.path)
        try:
            r = con.execute("SELECT category, model_version, text FROM requests WHERE request_id = ? "
                            "ORDER BY id DESC LIMIT 1", (request_id,)).fetchone()
        finally:
            con.close()
        return None if r is None else {"category": r[0], "model_version": r[1], "text": r[2]}

    def drift_counts(self, start: float, end: float, model_version: str | None = None) -> dict[str, tuple]:
        """Per category: (requests, unconfident requests, confidence sum) in [start, end), for drift."""
        sql = ("SELECT category, COUNT(*), SUM(1 - confident), SUM(confidence) FROM requests "
               "WHERE ts >= ? AND ts < ?" + (" AND model_version = ?" if model_version else "") + " GROUP BY category")
        con = connect(self.path)
        try:
            got = con.execute(sql, (start, end, model_version) if model_version else (start, end)).fetchall()
        finally:
            con.close()
        return {c: (int(n), int(u), float(s)) for c, n, u, s in got}

    def count(self) -> int:
        con = connect(self.path)
        try:
            return int(con.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
        finally:
            con.close()

    def stats_query(self, *, bucket: str = "week", group_by: Sequence[str] = ("category",),
                    weight: str = "requests", start: float | None = None, end: float | None = None) -> dict:
        """Counts and shares per bucket and group; rows that were not confident count as ``unclassified``.

        Shares are taken over the confident rows of a bucket only, as the OpenRouter study did.
        """
        cols = [GROUPS[g] for g in group_by]
        where, params = [], []
        if start is not None:
            where.append("ts >= ?")
            params.append(start)
        if end is not None:
            where.append("ts < ?")
            params.append(end)
        w = WEIGHTS[weight]
        sel = ", ".join(f"{c} AS g{i}" for i, c in enumerate(cols))
        sql = (f"SELECT {BUCKETS[bucket]} AS b, confident, {sel}, SUM({w}), COUNT(*) FROM requests "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} "
               f"GROUP BY b, confident, {', '.join(f'g{i}' for i in range(len(cols)))} ORDER BY b")
        con = connect(self.path)
        try:
            rows = con.execute(sql, params).fetchall()
        finally:
            con.close()
        buckets: dict[str, dict[str, Any]] = {}
        for b, confident, *rest in rows:
            keys, value, n = rest[: len(cols)], rest[-2] or 0, rest[-1]
            bk = buckets.setdefault(b, {"bucket": b, "total": 0, "unclassified": 0, "requests": 0, "groups": {}})
            bk["requests"] += n
            if not confident:
                bk["unclassified"] += value
                continue
            bk["total"] += value
            key = tuple(keys)
            bk["groups"][key] = bk["groups"].get(key, 0) + value
        out = []
        for bk in buckets.values():
            total = bk["total"]
            groups = [{**dict(zip(group_by, key, strict=True)), "value": v,
                       "share": round(v / total, 6) if total else 0.0}
                      for key, v in sorted(bk["groups"].items(), key=lambda kv: -kv[1])]
            out.append({**bk, "groups": groups})
        return {"bucket": bucket, "group_by": list(group_by), "weight": weight,
                "start": _iso(start), "end": _iso(end), "buckets": out}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()
