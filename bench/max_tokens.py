"""Accuracy and speed at 128 / 256 / 512 tokens, to pick the default window from numbers.

For each window: embed the training data at that window (texts that fit in a shorter window reuse its cached
embedding: identical), fit the head exactly as `train` does, report validation macro-F1 (the selection
criterion) and, for information, gold lenient accuracy / strict macro-F1; and the shipped graph's throughput at
batch 32 on 1,000 gold prompts with that window.

    python bench/max_tokens.py [--out reports/max_tokens.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier import Classifier  # noqa: E402
from classifier.labels import LABELS  # noqa: E402
from classifier.text import to_text  # noqa: E402
from training import data as datamod  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.embed import Embedder  # noqa: E402
from training.evaluate import score  # noqa: E402
from training.fit import fit_head  # noqa: E402
from training.train import macro_f1  # noqa: E402


def embed_at(texts: list[str], L: int, ntok: np.ndarray) -> np.ndarray:
    base = Embedder(256)
    out = base(texts) if L <= 256 else np.zeros((len(texts), 384), np.float32)
    if L > 256:
        short = np.where(ntok <= 256)[0]
        out[short] = base([texts[i] for i in short])
    need = np.where(ntok > min(L, 256))[0]
    if len(need):
        e = Embedder(L)
        out[need] = e([texts[i] for i in need])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="reports/max_tokens.json")
    ap.add_argument("--windows", default="128,256,512")
    ap.add_argument("--speed-only", action="store_true", help="keep the accuracy rows of --out, re-measure speed")
    args = ap.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    cfg = TrainConfig()
    ex = datamod.assemble(seed=cfg.seed)
    tr, va = datamod.split(ex, cfg.val_frac, cfg.seed)
    gold = datamod.load_gold(datamod.shared_data_dir() / "eval" / "gold_v1.jsonl")
    gtexts = [to_text(g["text"]) for g in gold]
    clf = Classifier.load(cascade=False)
    tok = clf._tok

    def ntoks(texts):
        return np.array([len(e.ids) for e in tok.encode_batch(["query: " + t[:20000] for t in texts])])

    nt_tr, nt_g = ntoks([e.text for e in ex]), ntoks(gtexts)
    sample = list(range(len(gtexts)))
    random.Random(0).shuffle(sample)
    sample = sample[:1000]
    lab = {k: i for i, k in enumerate(LABELS)}
    y = np.array([lab[e.label] for e in ex])
    w = np.array([1.0 if e.group == "written" else cfg.mapped_weight for e in ex])
    rows = json.loads(Path(args.out).read_text()) if args.speed_only else []
    for L in ([] if args.speed_only else windows):
        X = embed_at([e.text for e in ex], L, nt_tr)
        head, _ = fit_head(X[tr], y[tr], w[tr], X[va], y[va], list(LABELS), cfg.c_grid, cfg.cv_folds,
                           cfg.precision_target, cfg.default_threshold, cfg.seed)
        val_f1 = macro_f1(y[va], head.proba(X[va]).argmax(1), len(LABELS))
        G = embed_at(gtexts, L, nt_g)
        s = score(gold, [LABELS[k] for k in head.proba(G).argmax(1)], list(LABELS))
        rows.append({"max_tokens": L, "validation_macro_f1": round(val_f1, 4),
                     "gold_strict_macro_f1": s["strict_macro_f1"], "gold_lenient_accuracy": s["lenient_accuracy"],
                     "train_texts_truncated": round(float((nt_tr > L).mean()), 3),
                     "gold_texts_truncated": round(float((nt_g > L).mean()), 3)})
        print(rows[-1], flush=True)
    # speed: all windows back to back in one process, two alternating rounds, best of each (noisy machine)
    texts = [gtexts[i] for i in sample]
    best: dict[int, float] = {}
    for _ in range(2):
        for L in windows:
            clf.max_tokens = L
            clf.predict_proba(texts[:32])
            t = time.perf_counter()
            clf.predict_proba(texts)
            best[L] = max(best.get(L, 0.0), len(texts) / (time.perf_counter() - t))
    for r in rows:
        r["texts_per_s_b32"] = round(best.get(r["max_tokens"], 0.0), 1)
    print(f"\n{'max_tokens':>10s} {'val macro-F1':>12s} {'gold F1':>8s} {'gold lenient':>12s} "
          f"{'gold truncated':>14s} {'texts/s b32':>11s}")
    for r in rows:
        print(f"{r['max_tokens']:10d} {r['validation_macro_f1']:12.3f} {r['gold_strict_macro_f1']:8.3f} "
              f"{r['gold_lenient_accuracy']:12.3f} {r['gold_texts_truncated']:14.2f} {r['texts_per_s_b32']:11.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
