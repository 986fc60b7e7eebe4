"""Gold-set evaluation of a model, beside two baselines trained on the same data.

Strict macro-F1 on ``sure`` items (per-label precision/recall/F1 with support), lenient accuracy (label or alt)
on all items, both split en / zh / other, and language-ID accuracy. Writes JSON and a confusion-matrix PNG.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from classifier.text import to_text

from . import data as datamod

GROUPS = ("en", "zh", "other")


def lang_group(lang: str) -> str:
    return lang if lang in ("en", "zh") else "other"


def per_label(y: list[str], p: list[str], labels: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for lab in labels:
        tp = sum(1 for a, b in zip(y, p, strict=False) if a == lab and b == lab)
        fp = sum(1 for a, b in zip(y, p, strict=False) if a != lab and b == lab)
        fn = sum(1 for a, b in zip(y, p, strict=False) if a == lab and b != lab)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
                    "support": tp + fn}
    return out


def score(gold: list[dict[str, Any]], pred: list[str], labels: list[str]) -> dict[str, Any]:
    """Strict macro-F1 (sure items, labels with support) and lenient accuracy, overall and by language group."""
    def block(idx: list[int]) -> dict[str, Any]:
        sure = [i for i in idx if gold[i]["sure"]]
        pl = per_label([gold[i]["label"] for i in sure], [pred[i] for i in sure], labels)
        f1s = [v["f1"] for v in pl.values() if v["support"] > 0]
        lenient = [pred[i] in (gold[i]["label"], gold[i].get("alt")) for i in idx]
        return {"n": len(idx), "n_sure": len(sure),
                "strict_macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
                "lenient_accuracy": round(float(np.mean(lenient)) if lenient else 0.0, 4),
                "per_label": pl}
    all_idx = list(range(len(gold)))
    out = block(all_idx)
    out["by_language"] = {g: {k: v for k, v in block([i for i in all_idx
                                                     if lang_group(gold[i]["lang"]) == g]).items()
                              if k != "per_label"} for g in GROUPS}
    return out


def confusion_png(gold: list[dict[str, Any]], pred: list[str], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=int)
    for g, p in zip(gold, pred, strict=False):
        if g["sure"]:
            m[idx[g["label"]], idx[p]] += 1
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [f"{lab} ({m[i].sum()})" for i, lab in enumerate(labels)])
    for i in range(len(labels)):
        for j in range(len(labels)):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold label (support), sure items")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _taxonomy_descriptions(labels: list[str]) -> dict[str, str]:
    path = datamod.shared_data_dir().parent / "TAXONOMY.md"
    desc = {lab: lab.replace("_", " ") for lab in labels}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.match(r"\|\s*([a-z_]+)\s*\|\s*(.+?)\s*\|\s*(.+?)\s*\|$", line)
            if m and m.group(1) in desc:
                desc[m.group(1)] = f"{m.group(1).replace('_', ' ')}: {m.group(2)}; e.g. {m.group(3)}"
    return desc


def baselines(gold_texts: list[str], max_tokens: int, labels: list[str]) -> dict[str, list[str]]:
    """TF-IDF char n-grams + LR on the same training data; zero-shot nearest label description."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from .embed import Embedder

    ex = datamod.assemble()
    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, max_features=300_000,
                            sublinear_tf=True)
    Xt = tfidf.fit_transform([e.text for e in ex])
    lr = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000)
    lr.fit(Xt, [e.label for e in ex])
    tf_pred = list(lr.predict(tfidf.transform(gold_texts)))
    emb = Embedder(max_tokens)
    desc = _taxonomy_descriptions(labels)
    D = emb([desc[lab] for lab in labels])
    G = emb(gold_texts)
    zs_pred = [labels[k] for k in (G @ D.T).argmax(1)]
    return {"tfidf_char_lr": tf_pred, "zero_shot_descriptions": zs_pred}


def evaluate(model_dir: Path | None, gold_path: Path, out_dir: Path, with_baselines: bool = True,
             log=print) -> dict[str, Any]:
    from classifier import Classifier

    gold = datamod.load_gold(gold_path)
    clf = Classifier.load(model_dir)
    labels = clf.labels
    texts = [to_text(g["text"]) for g in gold]
    t = time.time()
    tags = clf.predict(texts)
    secs = time.time() - t
    pred = [tg.category for tg in tags]
    report: dict[str, Any] = {"model": clf.version, "gold": str(gold_path), "n": len(gold),
                              "seconds": round(secs, 1), "model_scores": score(gold, pred, labels)}
    conf = [tg.confident for tg in tags]
    report["model_scores"]["confident_share"] = round(float(np.mean(conf)), 4)
    ci = [i for i, c in enumerate(conf) if c]
    report["model_scores"]["lenient_accuracy_confident"] = round(float(np.mean(
        [pred[i] in (gold[i]["label"], gold[i].get("alt")) for i in ci])) if ci else 0.0, 4)
    lang_ok = [tg.language == g["lang"] for tg, g in zip(tags, gold, strict=False)]
    report["language_id"] = {"detector": clf.manifest.get("language_detector"),
                             "accuracy": round(float(np.mean(lang_ok)), 4), "n": len(gold)}
    if with_baselines:
        for name, bp in baselines(texts, clf.max_tokens, labels).items():
            s = score(gold, bp, labels)
            report[name] = {k: v for k, v in s.items() if k != "per_label"}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    confusion_png(gold, pred, labels, out_dir / "confusion.png", f"{clf.version} on {gold_path.name}")
    log(format_report(report))
    return report


def format_report(r: dict[str, Any]) -> str:
    m = r["model_scores"]
    lines = [f"model {r['model']} on {r['n']} gold items ({r['seconds']}s)", "",
             f"{'system':28s} {'strict macro-F1':>15s} {'lenient acc':>12s}   lenient en / zh / other"]

    def row(name: str, s: dict[str, Any]) -> str:
        bl = s["by_language"]
        return (f"{name:28s} {s['strict_macro_f1']:15.3f} {s['lenient_accuracy']:12.3f}   "
                + " / ".join(f"{bl[g]['lenient_accuracy']:.3f}" for g in GROUPS))
    lines.append(row("model", m))
    for b in ("tfidf_char_lr", "zero_shot_descriptions"):
        if b in r:
            lines.append(row(b, r[b]))
    lines += ["", f"confident share {m['confident_share']:.3f}, lenient accuracy when confident "
              f"{m['lenient_accuracy_confident']:.3f}",
              f"language ID ({r['language_id']['detector']}): {r['language_id']['accuracy']:.3f}", "",
              f"{'label':12s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'support':>8s}"]
    for lab, v in m["per_label"].items():
        lines.append(f"{lab:12s} {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f} {v['support']:8d}")
    return "\n".join(lines)
