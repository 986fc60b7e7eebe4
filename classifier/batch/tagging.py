"""The tagging function both engines run: one chunk of raw rows -> tagged rows + rejected rows, written as
per-chunk parts with atomic renames and a done marker last."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fields import FieldMap, RowError, normalize
from .readers import Chunk, parse_row

STATE = "_state"
META_COLS = ("request_id", "timestamp", "model", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs, picklable (no model object: each worker loads its own session)."""

    model: str | None
    fields: FieldMap
    out: str | None            # directory (Parquet), a .jsonl file, or None for stdout
    mode: str                  # "parquet" | "jsonl"
    threads: int | None = 1
    keep_text: bool = False
    scores: bool = False

    @property
    def state_dir(self) -> Path:
        assert self.out is not None
        return Path(self.out) / STATE if self.mode == "parquet" else Path(self.out + ".parts")


@dataclass
class ChunkResult:
    name: str
    read: int = 0
    tagged: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    jsonl: str | None = None
    skipped: bool = False     # finished by an earlier run
    bytes_done: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "read": self.read, "tagged": self.tagged, "rejected": self.rejected}


_CLF: dict[tuple[str | None, int | None], Any] = {}


def get_classifier(model: str | None, threads: int | None):
    key = (model, threads)
    if key not in _CLF:
        from ..model import Classifier

        _CLF[key] = Classifier.load(model, threads=threads)
    return _CLF[key]


def pin_threads(n: int = 1) -> None:
    """Stop BLAS/OpenMP pools oversubscribing when every core runs its own worker."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)


def _atomic_write(path: Path, data: bytes | None = None, table: Any = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if table is not None:
        import pyarrow.parquet as pq

        pq.write_table(table, tmp, compression="zstd")
    else:
        with open(tmp, "wb") as fh:
            fh.write(data or b"")
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def marker_path(spec: JobSpec, name: str) -> Path:
    return spec.state_dir / f"{name}.done"


def read_marker(spec: JobSpec, name: str) -> ChunkResult | None:
    p = marker_path(spec, name)
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return ChunkResult(d["name"], d["read"], d["tagged"], d["rejected"], skipped=True)


def tag_chunk(chunk: Chunk, spec: JobSpec) -> tuple[ChunkResult, dict[str, list[Any]], list[dict[str, Any]]]:
    """Tag one chunk: (counts, output columns, error records). Writes nothing."""
    clf = get_classifier(spec.model, spec.threads)
    res = ChunkResult(chunk.name)
    errors: list[dict[str, Any]] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    nums: list[int] = []
    ids: list[Any] = []
    for n, payload in chunk.rows:
        if chunk.fmt == "jsonl" and not payload.strip():
            continue
        res.read += 1
        try:
            row = parse_row(chunk.fmt, payload)
            text, meta = normalize(row, spec.fields)
        except RowError as exc:
            errors.append({"file": chunk.path, chunk.unit: n, "reason": str(exc)})
            continue
        texts.append(text)
        metas.append(meta)
        nums.append(n)
        ids.append(row.get("id") if isinstance(row, dict) else None)
    res.rejected = len(errors)
    tags = clf.predict(texts) if texts else []
    res.tagged = len(tags)
    cols: dict[str, list[Any]] = {c: [m[c] for m in metas] for c in META_COLS}
    cols.update({
        "category": [t.category for t in tags],
        "confidence": [t.confidence for t in tags],
        "confident": [t.confident for t in tags],
        "language": [t.language for t in tags],
        "language_confidence": [t.language_confidence for t in tags],
        "text_chars": [len(x) for x in texts],
        "model_version": [t.model_version for t in tags],
        "source_file": [chunk.path] * len(tags),
        "source_row": nums,
        "_id": ids,
        "_unit": [chunk.unit] * len(tags),
    })
    if spec.keep_text:
        cols["text"] = texts
    if spec.scores:
        for lab in clf.labels:
            cols[f"score_{lab}"] = [t.scores[lab] for t in tags]
    return res, cols, errors


def _schema(cols: dict[str, list[Any]]):
    import pyarrow as pa

    types = {
        "request_id": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"), "model": pa.string(),
        "category": pa.string(), "confidence": pa.float32(), "confident": pa.bool_(), "language": pa.string(),
        "language_confidence": pa.float32(), "prompt_tokens": pa.int64(), "completion_tokens": pa.int64(),
        "text_chars": pa.int32(), "model_version": pa.string(), "source_file": pa.string(),
        "source_row": pa.int64(), "text": pa.string(),
    }
    return pa.schema([(c, types.get(c, pa.float32())) for c in cols])


def to_jsonl(cols: dict[str, list[Any]]) -> str:
    lines = []
    for i in range(len(cols["category"])):
        rec: dict[str, Any] = {cols["_unit"][i]: cols["source_row"][i]}
        if cols["_id"][i] is not None:
            rec["id"] = cols["_id"][i]
        for c in META_COLS:
            v = cols[c][i]
            if v is not None:
                rec[c] = v.isoformat() if c == "timestamp" else v
        for c in ("category", "confidence", "confident", "language", "language_confidence", "model_version"):
            rec[c] = cols[c][i]
        score_cols = [c for c in cols if c.startswith("score_")]
        if score_cols:
            rec["scores"] = {c[6:]: cols[c][i] for c in score_cols}
        if "text" in cols:
            rec["text"] = cols["text"][i]
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    return "".join(lines)


def write_parquet_parts(out: Path, name: str, cols: dict[str, list[Any]]) -> list[str]:
    """One file per day touched by the chunk: ``out/day=YYYY-MM-DD/part-<chunk>.parquet``."""
    import pyarrow as pa

    for old in out.glob(f"day=*/part-{name}.parquet"):  # a crashed earlier attempt at this chunk
        old.unlink()
    data = {c: v for c, v in cols.items() if not c.startswith("_")}
    days: dict[str, list[int]] = {}
    for i, ts in enumerate(data["timestamp"]):
        days.setdefault(ts.date().isoformat() if ts is not None else "unknown", []).append(i)
    schema = _schema(data)
    written = []
    for day, idx in sorted(days.items()):
        tbl = pa.table({c: [v[i] for i in idx] for c, v in data.items()}, schema=schema)
        p = out / f"day={day}" / f"part-{name}.parquet"
        _atomic_write(p, table=tbl)
        written.append(str(p.relative_to(out)))
    return written


def run_chunk(chunk: Chunk, spec: JobSpec) -> ChunkResult:
    """Tag a chunk and persist it: data parts, then errors part, then the done marker (all atomic renames)."""
    res, cols, errors = tag_chunk(chunk, spec)
    res.errors = errors
    if spec.out is None:
        res.jsonl = to_jsonl(cols)
        return res
    state = spec.state_dir
    if spec.mode == "parquet":
        files = write_parquet_parts(Path(spec.out), chunk.name, cols)
    else:
        _atomic_write(state / f"{chunk.name}.jsonl", to_jsonl(cols).encode())
        files = [f"{chunk.name}.jsonl"]
    _atomic_write(state / f"{chunk.name}.errors.jsonl",
                  "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors).encode())
    _atomic_write(marker_path(spec, chunk.name), json.dumps({**res.to_dict(), "files": files}).encode())
    return res
