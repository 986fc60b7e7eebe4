"""Lenient accuracy of a model folder on the team's development set (training/data/dev/; never trained on).

    python bench/dev_eval.py [MODEL_DIR ...]

This is the set model variants are compared on (with the training-side validation split) before gold is run:
a prediction counts when it equals ``label`` or ``alt``; also prints strict accuracy over all 500 items.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier import Classifier  # noqa: E402

DEV = [ROOT / "training" / "data" / "dev" / n for n in ("zh_dev.jsonl", "other_dev.jsonl")]


def main() -> None:
    rows = [json.loads(line) for p in DEV for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    zh = np.array([r["lang"] == "zh" for r in rows])
    for model in sys.argv[1:] or [str(ROOT / "models" / "default")]:
        tags = Classifier.load(model).predict([r.get("request") or r["text"] for r in rows])
        ok = np.array([t.category in (r["label"], r.get("alt")) for t, r in zip(tags, rows, strict=True)])
        strict = np.mean([t.category == r["label"] for t, r in zip(tags, rows, strict=True)])
        print(f"{model}: dev lenient zh {ok[zh].mean():.3f} (n={zh.sum()}), other {ok[~zh].mean():.3f} "
              f"(n={(~zh).sum()}), all {ok.mean():.3f}; strict {strict:.3f}")


if __name__ == "__main__":
    main()
