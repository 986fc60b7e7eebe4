"""Local engine: the driver streams chunks from the inputs, a pool of processes (one single-threaded ONNX session
each) tags them, every chunk is persisted on its own, and a rerun skips the chunks that have a done marker."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .readers import Chunk, expand_inputs, file_key, file_size, iter_chunks
from .tagging import STATE, ChunkResult, JobSpec, pin_threads, read_marker, run_chunk


@dataclass
class Summary:
    read: int = 0
    tagged: int = 0
    rejected: int = 0
    chunks: int = 0
    reused: int = 0
    seconds: float = 0.0
    output: str = "-"
    errors_path: str | None = None
    shown_errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, r: ChunkResult) -> None:
        self.read += r.read
        self.tagged += r.tagged
        self.rejected += r.rejected
        self.chunks += 1
        self.reused += r.skipped

    def line(self) -> str:
        rate = self.tagged / max(self.seconds, 1e-9)
        s = (f"read {self.read} rows; tagged {self.tagged} rows, skipped {self.rejected} bad rows in "
             f"{self.seconds:.1f}s ({rate:.0f} rows/s)")
        if self.reused:
            s += f"; {self.reused} of {self.chunks} chunks were finished by an earlier run"
        if self.errors_path and self.rejected:
            s += f"; bad rows listed in {self.errors_path}"
        return s


def model_version(model: str | None) -> str:
    from ..model import default_model_path

    p = Path(model) if model else default_model_path()
    try:
        return str(json.loads((p / "manifest.json").read_text())["version"])
    except (OSError, KeyError, ValueError):
        return "?"


def output_mode(out: str | None) -> str:
    return "jsonl" if out in (None, "-") or out.endswith(".jsonl") else "parquet"


def prepare_state(spec: JobSpec, inputs: list[str], chunk_rows: int, overwrite: bool) -> None:
    """Record the job's settings; refuse to resume a job that would mix rows made with other settings."""
    state = spec.state_dir
    if overwrite:
        if spec.mode == "parquet" and Path(spec.out).exists():  # type: ignore[arg-type]
            shutil.rmtree(spec.out)  # type: ignore[arg-type]
        elif state.exists():
            shutil.rmtree(state)
    job = {"chunk_rows": chunk_rows, "fields": spec.fields.to_dict(), "keep_text": spec.keep_text,
           "scores": spec.scores, "model_version": model_version(spec.model)}
    path = state / "job.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in job.items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{spec.out} holds a job made with other settings "
                             f"({', '.join(f'{k}: {a!r} then, {b!r} now' for k, (a, b) in diff.items())}); "
                             "resume with the same settings, pass --overwrite, or write to another -o")
    elif spec.mode == "parquet" and Path(spec.out).exists() and any(Path(spec.out).glob("day=*")):  # type: ignore[arg-type]
        raise ValueError(f"{spec.out} already holds Parquet output not made by this command; pass --overwrite "
                         "or write to another -o")
    state.mkdir(parents=True, exist_ok=True)
    (state / "job.json").write_text(json.dumps({**job, "inputs": inputs}, indent=1))


def plan(inputs: list[str], spec: JobSpec, chunk_rows: int, fmt: str | None) -> Iterator[Chunk | ChunkResult]:
    """Chunks to tag, or the stored result of a chunk already done (its rows are read past, not kept)."""
    for path in inputs:
        done: set[int] = set()
        if spec.out is not None:
            key = file_key(path)
            for m in spec.state_dir.glob(f"{key}-*.done"):
                done.add(int(m.stem.rsplit("-", 1)[1]))
        for ch in iter_chunks(path, chunk_rows, spec.fields, fmt, skip=done):
            if ch.index in done:
                prev = read_marker(spec, ch.name)
                if prev is not None:
                    prev.bytes_done = ch.bytes_done
                    yield prev
                    continue
            yield ch


class Progress:
    """tqdm bar (rows, rows/s, ETA from input bytes) on a terminal; a log line every ``every`` s otherwise."""

    def __init__(self, total_bytes: int, every: float = 10.0, enabled: bool = True) -> None:
        self.total_bytes, self.every, self.enabled = total_bytes, every, enabled
        self.t0 = self.last = time.time()
        self.rows = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=None, unit="rows", unit_scale=True, smoothing=0.1, file=sys.stderr)
            except ImportError:
                pass

    def update(self, res: ChunkResult, bytes_done: int) -> None:
        n = res.read
        self.rows += n
        frac = bytes_done / self.total_bytes if self.total_bytes else 0.0
        if self.bar is not None:
            if frac > 0:
                self.bar.total = max(self.rows, int(self.rows / min(frac, 1.0)))
            self.bar.update(n)
            return
        now = time.time()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            dt = now - self.t0
            eta = f", ETA {dt * (1 - frac) / frac:.0f}s" if frac > 0 else ""
            print(f"[tag] {self.rows} rows, {self.rows / max(dt, 1e-9):.0f} rows/s, "
                  f"{frac:.0%} of input{eta}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def _pinned_env(threads: int):
    saved = dict(os.environ)
    pin_threads(threads)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _worker_init(threads: int) -> None:
    pin_threads(threads)


def run_local(inputs: list[str], spec: JobSpec, *, chunk_rows: int = 2000, workers: int | None = None,
              fmt: str | None = None, overwrite: bool = False, progress: bool = True, log_every: float = 10.0,
              show_errors: int = 20) -> Summary:
    """Tag every row of ``inputs`` into ``spec.out``; returns the counts (including chunks reused on resume)."""
    files = expand_inputs(inputs)
    t0 = time.time()
    if spec.out is not None:
        prepare_state(spec, files, chunk_rows, overwrite)
    summary = Summary(output=spec.out or "-")
    workers = workers or os.cpu_count() or 1
    prog = Progress(sum(file_size(f) for f in files), log_every, progress)
    out_fh = sys.stdout if spec.out is None else None
    stream = plan(files, spec, chunk_rows, fmt)
    names: list[str] = []

    def finish(res: ChunkResult, bytes_done: int) -> None:
        names.append(res.name)
        summary.add(res)
        if not res.skipped:
            for e in res.errors:
                if summary.shown_errors < show_errors:
                    unit = "line" if "line" in e else "row"
                    print(f"{e['file']}:{e[unit]}: skipped: {e['reason']}", file=sys.stderr)
                summary.shown_errors += 1
            if out_fh is not None and res.jsonl:
                out_fh.write(res.jsonl)
        prog.update(res, bytes_done)

    # Peek: a job of one chunk runs in this process (no pool start-up, all threads to one session).
    head: list[Chunk | ChunkResult] = []
    for item in stream:
        head.append(item)
        if sum(isinstance(x, Chunk) for x in head) > 1:
            break
    todo = sum(isinstance(x, Chunk) for x in head)
    rest = stream if todo > 1 else iter(())
    if workers <= 1 or todo <= 1:
        local = JobSpec(**{**spec.__dict__, "threads": spec.threads if workers > 1 or spec.threads else None})
        for item in [*head, *rest]:
            if isinstance(item, ChunkResult):
                finish(item, item.bytes_done)
            else:
                finish(run_chunk(item, local), item.bytes_done)
    else:
        import multiprocessing as mp

        threads = spec.threads or 1
        with _pinned_env(threads):
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(threads,))
        try:
            pending: deque[tuple[Any, int]] = deque()
            for item in [*head, *rest]:
                if isinstance(item, ChunkResult):
                    pending.append((item, item.bytes_done))
                else:
                    pending.append((pool.apply_async(run_chunk, (item, spec)), item.bytes_done))
                while pending and (len(pending) > 2 * workers or not hasattr(pending[0][0], "get")):
                    res, b = pending.popleft()
                    finish(res.get() if hasattr(res, "get") else res, b)
            while pending:
                res, b = pending.popleft()
                finish(res.get() if hasattr(res, "get") else res, b)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
    prog.close()
    if summary.shown_errors > show_errors:
        print(f"... {summary.shown_errors - show_errors} more bad rows", file=sys.stderr)
    if spec.out is not None:
        summary.errors_path = finalize(spec, names)
    summary.seconds = time.time() - t0
    return summary


def _concat(parts: list[Path], dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as out:
        for p in parts:
            if p.exists():
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out)
    os.replace(tmp, dest)


def finalize(spec: JobSpec, names: list[str]) -> str:
    """errors.jsonl (and the .jsonl output) assembled from the per-chunk parts, in input order."""
    state = spec.state_dir
    if spec.mode == "parquet":
        err = Path(spec.out) / "errors.jsonl"  # type: ignore[arg-type]
    else:
        err = Path(spec.out).with_suffix(".errors.jsonl")  # type: ignore[arg-type]
    _concat([state / f"{n}.errors.jsonl" for n in names], err)
    if spec.mode == "jsonl":
        _concat([state / f"{n}.jsonl" for n in names], Path(spec.out))  # type: ignore[arg-type]
        shutil.rmtree(state)
    else:
        (state / "summary.json").write_text(json.dumps({"chunks": names}))
    return str(err)


__all__ = ["run_local", "Summary", "JobSpec", "STATE", "output_mode"]
