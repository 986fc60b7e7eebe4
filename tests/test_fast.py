from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from classifier import Classifier
from classifier import fast as fastmod
from classifier.build import sha256
from classifier.labels import LABELS
from classifier.model import ModelError
from training.fast_tier import cascade_route, cascade_thresholds

TEXTS = ["hello world", "translate the code", "python code", "你好 翻译", "a", "qqq"]


def add_fast_tier(model_dir: Path, cut: float, default: bool, seed: int = 0) -> Path:
    """A random fast tier inside a model folder, with one cascade cut for every label."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    ids = np.arange(4, tok.get_vocab_size() - 1)
    vecs = rng.normal(0, 1, (len(ids), 8))
    fastmod.save(model_dir / "fast.npz", ids, vecs, rng.normal(0, 3, (8, len(LABELS))), np.zeros(len(LABELS)))
    man = json.loads((model_dir / "manifest.json").read_text())
    man["files"]["fast.npz"] = sha256(model_dir / "fast.npz")
    man["fast_tier"] = {"file": "fast.npz", "cascade_default": default,
                        "cascade_thresholds": {lab: cut for lab in LABELS},
                        "thresholds": {lab: 0.5 for lab in LABELS}}
    (model_dir / "manifest.json").write_text(json.dumps(man))
    return model_dir


@pytest.fixture()
def model_copy(fake_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(fake_model_dir, tmp_path / "m"))


def test_pool_skips_unknown_tokens_and_normalises():
    lookup = np.array([-1, 0, 1, -1])
    vecs = np.array([[3.0, 0.0], [0.0, 4.0]], dtype=np.float16)
    x = fastmod.pool([[1, 2], [1, 3, 3], [0, 3], []], lookup, vecs)
    assert np.allclose(x[0], [0.6, 0.8])
    assert np.allclose(x[1], [1.0, 0.0])  # unknown ids contribute nothing
    assert not x[2].any() and not x[3].any()  # nothing known: an all-zero row, never NaN


def test_fast_proba_rows_are_distributions_or_zero(model_copy):
    add_fast_tier(model_copy, 0.0, False)
    clf = Classifier.load(model_copy)
    p = clf.fast.proba(TEXTS + ["   "])
    assert p.shape == (len(TEXTS) + 1, len(LABELS))
    assert np.allclose(p[:-1].sum(1), 1.0, atol=1e-5)
    assert not p[-1].any()


def test_cascade_routes_by_threshold(model_copy):
    add_fast_tier(model_copy, 0.0, True)
    clf = Classifier.load(model_copy)  # manifest says cascade by default
    assert clf.cascade
    tags = clf.predict(TEXTS)
    assert {t.extra["tier"] for t in tags} == {"fast"}
    assert np.allclose(clf.predict_proba(TEXTS), clf.fast.proba(TEXTS))
    assert all(t.to_dict()["tier"] == "fast" for t in tags)
    assert all(t.confident == (t.confidence >= 0.5) for t in tags)  # the fast tier's own thresholds

    never = Classifier.load(add_fast_tier(model_copy, 1.01, True))
    assert {t.extra["tier"] for t in never.predict(TEXTS)} == {"transformer"}
    assert np.allclose(never.predict_proba(TEXTS), never.transformer_proba(TEXTS))


def test_cascade_mixes_tiers_row_by_row(model_copy):
    add_fast_tier(model_copy, 0.0, False)
    clf = Classifier.load(model_copy, cascade=True)
    p_fast = clf.fast.proba(TEXTS)
    cut = float(np.median(p_fast.max(1)))
    clf.cascade_thresholds[:] = cut
    p = clf.predict_proba(TEXTS)
    fast_rows = p_fast.max(1) >= cut
    assert 0 < fast_rows.sum() < len(TEXTS)
    assert np.allclose(p[fast_rows], p_fast[fast_rows])
    slow_texts = [t for t, f in zip(TEXTS, fast_rows, strict=True) if not f]
    assert np.allclose(p[~fast_rows], clf.transformer_proba(slow_texts))
    tiers = [t.extra["tier"] for t in clf.predict(TEXTS)]
    assert tiers == ["fast" if f else "transformer" for f in fast_rows]


def test_cascade_off_keeps_outputs_unchanged(model_copy, fake_clf):
    add_fast_tier(model_copy, 0.0, False)
    clf = Classifier.load(model_copy)
    assert not clf.cascade
    tags = clf.predict(TEXTS)
    assert "tier" not in tags[0].to_dict()
    assert np.allclose(clf.predict_proba(TEXTS), fake_clf.predict_proba(TEXTS))


def test_cascade_needs_a_fast_tier(fake_model_dir):
    with pytest.raises(ModelError, match="fast tier"):
        Classifier.load(fake_model_dir, cascade=True)


def test_tampered_fast_table_is_refused(model_copy):
    add_fast_tier(model_copy, 0.0, True)
    z = dict(np.load(model_copy / "fast.npz"))
    z["bias"] = z["bias"] + 1
    np.savez(model_copy / "fast.npz", **z)
    with pytest.raises(ModelError, match="sha256"):
        Classifier.load(model_copy)


def test_no_pickles_in_fast_file(model_copy):
    add_fast_tier(model_copy, 0.0, True)
    z = np.load(model_copy / "fast.npz", allow_pickle=False)  # raises if any array needs pickle
    assert set(z.files) == {"token_ids", "vectors", "scales", "weight", "bias"}
    assert z["vectors"].dtype == np.int8


def test_int8_rows_round_trip_closely():
    v = np.random.default_rng(1).normal(0, 1, (50, 16))
    q, s = fastmod.quantize_rows(v)
    back = q.astype(np.float32) * s.astype(np.float32)[:, None]
    assert np.abs(back - v).max() <= np.abs(v).max(1).max() / 127 + 1e-2


def _probs(top: np.ndarray, k: np.ndarray, n_labels: int = 3) -> np.ndarray:
    p = np.full((len(top), n_labels), 0.0)
    p[np.arange(len(top)), k] = top
    p += ((1 - top) / n_labels)[:, None]
    return p


def test_cascade_thresholds_keep_the_budget():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 3, n)
    slow = _probs(np.full(n, 0.9), y)  # the transformer is always right
    top = rng.uniform(0.3, 1.0, n)
    right = rng.uniform(size=n) < top  # the fast tier is right more often when it is confident
    k = np.where(right, y, (y + 1) % 3)
    fast = _probs(top, k)
    labels = ["a", "b", "c"]
    for budget in (0.0, 0.01, 0.05):
        cuts = cascade_thresholds(fast, slow, y, labels, budget)
        routed = cascade_route(fast, np.array([cuts[lab] for lab in labels]))
        casc = np.where(routed, fast.argmax(1), slow.argmax(1))
        assert 1.0 - (casc == y).mean() <= budget + 1e-9
    loose = cascade_route(fast, np.array(list(cascade_thresholds(fast, slow, y, labels, 0.05).values())))
    tight = cascade_route(fast, np.array(list(cascade_thresholds(fast, slow, y, labels, 0.01).values())))
    assert loose.sum() > tight.sum() > 0


def test_cascade_thresholds_answer_everything_when_fast_is_as_good():
    y = np.arange(300) % 3
    p = _probs(np.full(300, 0.8), y)
    cuts = cascade_thresholds(p, p, y, ["a", "b", "c"], 0.0)
    assert cascade_route(p, np.array(list(cuts.values()))).all()


@pytest.mark.slow
def test_real_model_cascade_says_which_tier(real_clf):
    if real_clf.fast is None:
        pytest.skip("models/default has no fast tier yet: python -m training.fast_tier models/default")
    clf = Classifier.load(real_clf.model_dir, cascade=True)
    tags = clf.predict(["Translate to German: good morning", "def f(x): return x  # why does this fail?"])
    assert {t.extra["tier"] for t in tags} <= {"fast", "transformer"}
    assert tags[0].category == "translation"
    assert tags[1].category == "programming"
