"""Fake model versions for the retraining tests: any label list, a fake train step, gold files made to order."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from training.data import Example

from .conftest import write_fake_model


def write_fake_version(dest: Path, labels: list[str], seed: int, version: str | None = None,
                       extra: dict | None = None) -> Path:
    # one encoder for every version, as with the real model: only the head differs
    return write_fake_model(dest, labels=labels, encoder_seed=0, head_seed=seed,
                            version=version or f"{dest.name}-s{seed}", extra=extra)


class FakeTrain:
    """Stands in for ``training.train.train``: records what it was given, writes a fake version."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, out_dir, cfg, examples, labels, parent=None, log=print) -> Path:
        self.calls.append({"examples": list(examples), "labels": list(labels), "parent": parent, "cfg": cfg})
        h = hashlib.sha256("".join(f"{e.label}{e.text}" for e in examples).encode()).digest()
        by_label = Counter(e.label for e in examples)
        extra = {"parent": parent, "training_config": cfg.to_dict(), "head": {"C": cfg.c_grid[0]},
                 "data": {"counts": {"total": len(examples), "by_label": dict(by_label)}},
                 "metrics": {"validation": {"macro_f1": 0.9}},
                 "reference": {"label_share": {k: v / len(examples) for k, v in by_label.items()},
                               "validation_unconfident_share": 0.1,
                               "validation_mean_confidence": {lab: 0.8 for lab in labels}}}
        return write_fake_version(Path(out_dir), labels, int.from_bytes(h[:4], "little"), extra=extra)


def base_examples(labels: list[str], per_label: int = 3) -> list[Example]:
    return [Example(f"base {lab} example {i}", lab, "en", "test", "written") for lab in labels
            for i in range(per_label)]


def gold_from(model_dir: Path, path: Path, texts: list[str]) -> Path:
    """A gold file whose labels are ``model_dir``'s own predictions: that model scores 1.0 on it."""
    from classifier import Classifier

    tags = Classifier.load(model_dir).predict(texts)
    with open(path, "w") as fh:
        for t, tag in zip(texts, tags, strict=True):
            fh.write(json.dumps({"text": t, "label": tag.category, "alt": None, "sure": True, "lang": "en"}) + "\n")
    return path


GOLD_TEXTS = [f"{w} {x}" for w in ("hello", "translate", "python code", "the query", "你好", "world a")
              for x in ("one", "two", "three", "four", "five", "six", "seven")]
