"""Single-prompt latency of the shipped model for prompts under 50 words (the issue's p50 <= 15 ms target).

    python bench/latency_short.py [--n 300]

Measures `Classifier.predict([prompt])` end to end (text building, tokenizer, ONNX graph, language ID) and
`predict_proba` (no language ID), one prompt at a time, on gold prompts of fewer than 50 words.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier import Classifier  # noqa: E402
from classifier.text import to_text  # noqa: E402
from training import data as datamod  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--model", help="model folder (default models/default)")
    args = ap.parse_args()
    gold = datamod.load_gold(datamod.shared_data_dir() / "eval" / "gold_v1.jsonl")
    random.Random(0).shuffle(gold)
    texts = [t for t in (to_text(g["text"]) for g in gold) if len(t.split()) < 50 and len(t) < 400][: args.n]
    clf = Classifier.load(args.model) if args.model else Classifier.load()
    clf.predict(texts[:5])
    for name, fn in (("predict (with language ID)", lambda t: clf.predict([t])),
                     ("predict_proba (graph only)", lambda t: clf.predict_proba([t]))):
        lat = []
        for t in texts:
            s = time.perf_counter()
            fn(t)
            lat.append((time.perf_counter() - s) * 1000)
        print(f"{name:28s} n={len(texts)} p50 {np.percentile(lat, 50):.2f} ms  p90 {np.percentile(lat, 90):.2f} ms"
              f"  p99 {np.percentile(lat, 99):.2f} ms")


if __name__ == "__main__":
    main()
