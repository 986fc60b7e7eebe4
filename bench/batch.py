"""Batch-tagging benchmark: local engine vs the classifier's in-process throughput, peak RSS, Ray overhead.

    python bench/batch.py --n 100000            # the issue's size
    python bench/batch.py --n 5000 --no-ray     # quick

Builds a synthetic log from the shared source prompts (bench/synthlog.py; not committed), measures single-thread
``Classifier.predict`` rows/s on a sample of it, then runs ``prompt-tagger tag`` on the whole log with the local
engine (one process per core, ONNX pinned to one thread each) and, unless --no-ray, with ``--engine ray``.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def in_process(model: str | None, texts: list[str], threads: int) -> float:
    from classifier import Classifier

    clf = Classifier.load(model, threads=threads)
    clf.predict(texts[:64])  # warm-up
    t = time.perf_counter()
    clf.predict(texts)
    return len(texts) / (time.perf_counter() - t)


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS of the job's processes in MiB, stderr) of one `prompt-tagger tag` run."""
    code = ("import resource, sys; from classifier.cli import main; rc = main(sys.argv[1:]); "
            "s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
            "print(f'RSS {s} {c}', file=sys.stderr); sys.exit(rc)")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    rss = [line for line in r.stderr.splitlines() if line.startswith("RSS ")][-1].split()
    return dt, max(int(rss[1]), int(rss[2])) / 1024, r.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--model", help="model folder (default models/default)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--sample", type=int, default=2000, help="rows for the in-process measurement")
    ap.add_argument("--chunk-rows", type=int, default=2000)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()

    import synthlog

    from classifier.batch.fields import FieldMap, normalize

    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    log = synthlog.write(tmp / "log.jsonl.gz", a.n)
    with __import__("gzip").open(log, "rt") as fh:
        texts = [normalize(json.loads(next(fh)), FieldMap())[0] for _ in range(min(a.sample, a.n))]
    one = in_process(a.model, texts, threads=1)
    print(f"in-process Classifier.predict, 1 thread: {one:.0f} rows/s on {len(texts)} rows", flush=True)
    model = ["--model", a.model] if a.model else []
    common = [str(log), *model, "--workers", str(a.workers), "--chunk-rows", str(a.chunk_rows), "--no-progress",
              "--overwrite"]
    dt, rss, err = run_cli(["tag", *common, "-o", str(tmp / "local")])
    local = a.n / dt
    ideal = one * a.workers
    print(f"local engine, {a.workers} workers: {a.n} rows in {dt:.1f}s = {local:.0f} rows/s "
          f"({local / ideal:.0%} of in-process x {a.workers}); peak RSS per process {rss:.0f} MiB", flush=True)
    print("  " + [line for line in err.splitlines() if line.startswith("read ")][-1])
    figures = {"n": a.n, "workers": a.workers, "cpu_count": os.cpu_count(), "inproc_rows_s_1thread": round(one, 1),
               "local_rows_s": round(local, 1), "local_seconds": round(dt, 1), "efficiency": round(local / ideal, 3),
               "peak_rss_mib": round(rss)}
    if not a.no_ray:
        dtr, rssr, err = run_cli(["tag", *common, "-o", str(tmp / "ray"), "--engine", "ray"])
        print(f"ray engine, {a.workers} actors: {a.n} rows in {dtr:.1f}s = {a.n / dtr:.0f} rows/s; overhead "
              f"{dtr - dt:+.1f}s vs local ({dtr / dt - 1:+.0%}); driver peak RSS {rssr:.0f} MiB", flush=True)
        figures.update({"ray_rows_s": round(a.n / dtr, 1), "ray_seconds": round(dtr, 1),
                        "ray_overhead_s": round(dtr - dt, 1)})
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench process peak RSS (in-process measurement): {self_rss:.0f} MiB")
    figures["inproc_peak_rss_mib"] = round(self_rss)
    print(json.dumps(figures))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
