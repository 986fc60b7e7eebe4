"""Input files -> fixed-size chunks of raw rows, streamed in bounded memory.

Chunk ``k`` of a file is always rows ``[k*N, (k+1)*N)`` of that file (JSONL: physical lines), so a chunk has the
same identity in every run and on every engine; that is what makes resume and the local/Ray comparison work.
JSONL lines are shipped undecoded and parsed by the worker that tags them.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fields import FieldMap, RowError

FORMATS = ("jsonl", "csv", "parquet")


@dataclass
class Chunk:
    path: str
    key: str                 # stable id of the input file, used in output part names
    index: int               # chunk number within the file
    fmt: str
    rows: list[tuple[int, Any]] = field(default_factory=list)  # (line or row number, raw line bytes | dict)
    bytes_done: int = 0      # input bytes consumed when this chunk was cut (for ETA)

    @property
    def name(self) -> str:
        return f"{self.key}-{self.index:06d}"

    @property
    def unit(self) -> str:
        return "line" if self.fmt == "jsonl" else "row"


def is_remote(path: str) -> bool:
    return "://" in path


def detect_format(path: str) -> str:
    p = path.lower().removesuffix(".gz")
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"),
                     (".parquet", "parquet"), (".pq", "parquet")):
        if p.endswith(ext):
            return fmt
    raise ValueError(f"{path}: cannot tell the format from the name; expected .jsonl, .jsonl.gz, .csv, .csv.gz "
                     "or .parquet, or pass --format")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, directories (searched recursively for known formats) and globs -> sorted unique file list."""
    out: list[str] = []
    for spec in inputs:
        if is_remote(spec):
            out.append(spec)
            continue
        if any(c in spec for c in "*?["):
            hits = sorted(glob.glob(spec, recursive=True))
            if not hits:
                raise FileNotFoundError(f"{spec}: the pattern matches no file")
            out.extend(h for h in hits if os.path.isfile(h))
        elif os.path.isdir(spec):
            found = []
            for root, dirs, files in os.walk(spec):
                dirs.sort()
                for f in sorted(files):
                    try:
                        detect_format(f)
                    except ValueError:
                        continue
                    found.append(os.path.join(root, f))
            if not found:
                raise FileNotFoundError(f"{spec}: no .jsonl/.csv/.parquet file in this directory")
            out.extend(found)
        elif os.path.isfile(spec):
            out.append(spec)
        else:
            raise FileNotFoundError(f"{spec}: no such file, directory or pattern")
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def file_key(path: str) -> str:
    full = path if is_remote(path) else str(Path(path).resolve())
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(path))[:40]
    return f"{stem}-{hashlib.sha1(full.encode()).hexdigest()[:8]}"


def file_size(path: str) -> int:
    if is_remote(path):
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _open_binary(path: str):
    if is_remote(path):
        from . import need

        fs_mod = need("pyarrow.fs")
        fs, p = fs_mod.FileSystem.from_uri(path)
        raw = fs.open_input_stream(p)
    else:
        raw = open(path, "rb")
    return raw


class _Counting(io.RawIOBase):
    """Counts compressed bytes read so progress can be estimated for .gz inputs."""

    def __init__(self, fh) -> None:
        self.fh, self.n = fh, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.fh.read(len(b))
        self.n += len(data)
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.fh.close()
        super().close()


def _text_stream(path: str):
    counter = _Counting(_open_binary(path))
    buf = io.BufferedReader(counter, 1 << 20)
    stream = gzip.GzipFile(fileobj=buf) if path.lower().endswith(".gz") else buf
    return stream, counter


def iter_chunks(path: str, chunk_rows: int, fm: FieldMap, fmt: str | None = None,
                skip: set[int] | None = None) -> Iterator[Chunk]:
    """Chunks of ``path``; chunks whose index is in ``skip`` are read past but come back with no rows."""
    fmt = fmt or detect_format(path)
    key = file_key(path)
    skip = skip or set()
    if fmt == "parquet":
        yield from _parquet_chunks(path, key, chunk_rows, fm, skip)
        return
    stream, counter = _text_stream(path)
    with stream:
        rows = _jsonl_rows(stream) if fmt == "jsonl" else _csv_rows(stream)
        k, cur = 0, Chunk(path, key, 0, fmt)
        for n, payload in rows:
            if (n - 1) // chunk_rows != k:
                cur.bytes_done = counter.n
                yield cur
                k = (n - 1) // chunk_rows
                cur = Chunk(path, key, k, fmt)
            if k not in skip:
                cur.rows.append((n, payload))
        cur.bytes_done = counter.n
        if cur.rows or k in skip or k == 0:
            yield cur


def _jsonl_rows(stream) -> Iterator[tuple[int, bytes]]:
    yield from enumerate(stream, 1)


def _csv_rows(stream) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(sys.maxsize)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
    for n, row in enumerate(csv.DictReader(text), 1):
        if None in row:  # more cells than header columns
            row = {k: v for k, v in row.items() if k is not None}
            row["__error__"] = "row has more cells than the header has columns"
        yield n, row


def _parquet_chunks(path: str, key: str, chunk_rows: int, fm: FieldMap, skip: set[int]) -> Iterator[Chunk]:
    from . import need

    pq = need("pyarrow.parquet")
    if is_remote(path):
        fs_mod = need("pyarrow.fs")
        fs, p = fs_mod.FileSystem.from_uri(path)
        pf = pq.ParquetFile(fs.open_input_file(p))
    else:
        pf = pq.ParquetFile(path)
    wanted = fm.columns()
    cols = [n for n in pf.schema_arrow.names if n in wanted]
    if not cols:
        raise ValueError(f"{path}: none of the mapped columns {sorted(wanted)} is in this file; its columns are "
                         f"{pf.schema_arrow.names[:12]}; map yours with --text-field / --request-field")
    total = pf.metadata.num_rows
    size = file_size(path)
    rg_starts, acc = [], 0
    for i in range(pf.num_row_groups):
        rg_starts.append(acc)
        acc += pf.metadata.row_group(i).num_rows
    n_chunks = max(1, -(-total // chunk_rows))
    for k in range(n_chunks):
        lo, hi = k * chunk_rows, min(total, (k + 1) * chunk_rows)
        ch = Chunk(path, key, k, "parquet", bytes_done=int(size * hi / max(total, 1)))
        if k not in skip and hi > lo:
            groups = [i for i, s in enumerate(rg_starts)
                      if s < hi and s + pf.metadata.row_group(i).num_rows > lo]
            tbl = pf.read_row_groups(groups, columns=cols)
            tbl = tbl.slice(lo - rg_starts[groups[0]], hi - lo)
            ch.rows = list(zip(range(lo + 1, hi + 1), tbl.to_pylist(), strict=False))
        yield ch


def parse_row(fmt: str, payload: Any) -> Any:
    """A raw row -> a parsed object (str or dict); raises RowError with the reason."""
    if fmt != "jsonl":
        if isinstance(payload, dict) and "__error__" in payload:
            raise RowError(payload["__error__"])
        return payload
    try:
        line = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise RowError(f"not JSON: {exc.msg} at column {exc.colno}") from None
