"""``--engine ray``: the same per-chunk function (:func:`tagging.run_chunk`) run by a Ray Data actor pool.

Each actor loads its own ONNX session (sessions cannot be pickled). The dataset is the list of chunk specs, one
block each, so Ray spreads them over the actors; the actors read their chunk themselves, so a cluster's workers
read ``s3://`` inputs in parallel. Parquet files are split per chunk; JSONL and CSV files (which cannot be entered
in the middle without a scan) are one task per file, chunked inside the task. Output parts and done markers are
named exactly as the local engine names them, so a job can be resumed by either engine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .engine import Summary, finalize, prepare_state
from .fields import FieldMap
from .readers import detect_format, expand_inputs, file_key, iter_chunks
from .tagging import ChunkResult, JobSpec, read_marker, run_chunk


def _parquet_chunk_count(path: str, chunk_rows: int) -> int:
    import pyarrow.parquet as pq

    if "://" in path:
        import pyarrow.fs as pafs

        fs, p = pafs.FileSystem.from_uri(path)
        n = pq.ParquetFile(fs.open_input_file(p)).metadata.num_rows
    else:
        n = pq.ParquetFile(path).metadata.num_rows
    return max(1, -(-n // chunk_rows))


def make_specs(files: list[str], chunk_rows: int, fmt: str | None) -> list[dict[str, Any]]:
    specs = []
    for f in files:
        ff = fmt or detect_format(f)
        if ff == "parquet":
            specs += [{"path": f, "fmt": ff, "index": k} for k in range(_parquet_chunk_count(f, chunk_rows))]
        else:
            specs.append({"path": f, "fmt": ff, "index": -1})
    return specs


def spec_to_json(spec: JobSpec) -> str:
    d = {**spec.__dict__, "fields": spec.fields.to_dict()}
    return json.dumps(d)


def spec_from_json(s: str) -> JobSpec:
    d = json.loads(s)
    d["fields"] = FieldMap.from_dict(d["fields"])
    return JobSpec(**d)


class ChunkTagger:
    """Ray Data actor: one ONNX session per actor, built in the actor process."""

    def __init__(self, spec_json: str, chunk_rows: int) -> None:
        from .tagging import get_classifier, pin_threads

        pin_threads(1)
        self.spec = spec_from_json(spec_json)
        self.chunk_rows = chunk_rows
        get_classifier(self.spec.model, self.spec.threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"name": [], "read": [], "tagged": [], "rejected": [], "skipped": [],
                                     "errors": []}
        for path, fmt, index in zip(batch["path"], batch["fmt"], batch["index"], strict=True):
            path, fmt, index = str(path), str(fmt), int(index)
            key = file_key(path)
            done = {int(m.stem.rsplit("-", 1)[1]) for m in self.spec.state_dir.glob(f"{key}-*.done")}
            if index >= 0:
                skip = set(range(index)) | done | {index + 1}  # read only chunk `index`
                only = index
            else:
                skip, only = done, None
            for ch in iter_chunks(path, self.chunk_rows, self.spec.fields, fmt, skip=skip):
                if only is not None and ch.index != only:
                    continue
                res: ChunkResult | None = read_marker(self.spec, ch.name) if ch.index in done else None
                if res is None:
                    res = run_chunk(ch, self.spec)
                out["name"].append(res.name)
                out["read"].append(res.read)
                out["tagged"].append(res.tagged)
                out["rejected"].append(res.rejected)
                out["skipped"].append(res.skipped)
                out["errors"].append(json.dumps(res.errors[:20]))
                if only is not None:
                    break
        return out


def run_ray(inputs: list[str], spec: JobSpec, *, chunk_rows: int = 2000, workers: int | None = None,
            fmt: str | None = None, overwrite: bool = False, address: str | None = None,
            show_errors: int = 20, **_: Any) -> Summary:
    """Tag ``inputs`` with Ray Data; starts a local Ray unless ``address`` or ``RAY_ADDRESS`` names a cluster."""
    import sys

    from . import need

    if spec.out is None or spec.mode != "parquet":
        raise ValueError("--engine ray writes a Parquet directory: pass -o DIR (the shared path every worker sees)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = need("ray", "ray")
    need("ray.data", "ray")
    t0 = time.time()
    files = expand_inputs(inputs)
    spec = replace(spec, out=str(Path(spec.out).resolve()), model=str(Path(spec.model).resolve())
                   if spec.model else None, threads=1)
    prepare_state(spec, files, chunk_rows, overwrite)
    specs = make_specs(files, chunk_rows, fmt)
    address = address or os.environ.get("RAY_ADDRESS")
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # One CPU more than the actors: Ray Data's own tasks need a CPU, or the pipeline stalls silently.
            n = workers or os.cpu_count() or 1
            ray.init(num_cpus=n + 1, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}})
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = sys.stderr.isatty()
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        n_actors = max(1, min(workers or total_cpus - 1, total_cpus - 1, len(specs)))
        ds = ray.data.from_items(specs, override_num_blocks=len(specs))
        ds = ds.map_batches(ChunkTagger, fn_constructor_args=(spec_to_json(spec), chunk_rows), batch_size=1,
                            concurrency=n_actors, num_cpus=1, batch_format="numpy")
        rows = ds.take_all()
    finally:
        if started:
            ray.shutdown()
    summary = Summary(output=spec.out or "-")
    by_name = {r["name"]: r for r in rows}
    names = sorted(by_name, key=lambda n: (files.index(next(f for f in files if n.startswith(file_key(f)))), n))
    for n in names:
        r = by_name[n]
        res = ChunkResult(n, int(r["read"]), int(r["tagged"]), int(r["rejected"]), skipped=bool(r["skipped"]))
        summary.add(res)
        if not res.skipped:
            for e in json.loads(str(r["errors"])):
                if summary.shown_errors < show_errors:
                    unit = "line" if "line" in e else "row"
                    print(f"{e['file']}:{e[unit]}: skipped: {e['reason']}", file=sys.stderr)
                summary.shown_errors += 1
    summary.errors_path = finalize(spec, names)
    summary.seconds = time.time() - t0
    summary.extra["actors"] = n_actors
    return summary
