"""End-to-end training: data -> embeddings -> head -> checked export -> model folder."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from classifier.labels import LABELS

from . import data as datamod
from . import export
from .config import TrainConfig
from .embed import Embedder
from .fit import fit_head

PROBE_SIZE = 400


def macro_f1(y: np.ndarray, p: np.ndarray, n: int) -> float:
    f1s = []
    for k in range(n):
        tp = int(((p == k) & (y == k)).sum())
        fp = int(((p == k) & (y != k)).sum())
        fn = int(((p != k) & (y == k)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def _fine_tune(cfg: TrainConfig, texts: list[str], X0: np.ndarray, y: np.ndarray, w: np.ndarray,
               tr: list[int], va: list[int], labels: list[str], log) -> tuple[dict, dict, np.ndarray]:
    """LoRA on the top ``cfg.finetune_layers`` layers, started from a frozen-encoder head; returns the adapters,
    a description for the manifest and every text's embedding under the adapted encoder."""
    from . import finetune as ft

    t0 = time.time()
    init, _ = fit_head(X0[tr], y[tr], w[tr], X0[va], y[va], labels, (max(cfg.c_grid),), cfg.cv_folds,
                       cfg.precision_target, cfg.default_threshold, cfg.seed)
    fcfg = ft.LoraConfig(start=12 - cfg.finetune_layers, rank=cfg.lora_rank, alpha=2.0 * cfg.lora_rank,
                         epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, max_tokens=cfg.max_tokens, seed=cfg.seed)
    hs = ft.hidden_states(texts, fcfg.start, cfg.max_tokens, progress=True)
    log(f"fine-tune: hidden states entering layer {fcfg.start} for {len(hs)} texts in {time.time() - t0:.0f}s")
    top, _ = ft.train_lora([hs[i] for i in tr], y[tr], w[tr], init.weight, init.bias, fcfg, log=log)
    adapters = ft.adapters(top)
    X = ft.embed(top, hs)
    info = {"method": "LoRA adapters on the top encoder layers, trained jointly with a linear head "
                      "(class-balanced cross-entropy) on the training split; the shipped head is refit on top",
            "layers": list(range(fcfg.start, 12)), "rank": fcfg.rank, "alpha": fcfg.alpha, "epochs": fcfg.epochs,
            "lr": fcfg.lr, "init_C": float(max(cfg.c_grid)), "file": "adapters.npz",
            "seconds": round(time.time() - t0, 1)}
    log(f"fine-tune: {info['seconds']:.0f}s")
    return adapters, info, X


def train(out_dir: Path, config: TrainConfig | None = None, examples: list[datamod.Example] | None = None,
          labels: list[str] | None = None, parent: str | None = None, log=print,
          adapters: dict[str, np.ndarray] | None = None) -> Path:
    """Train a model folder. With ``adapters`` (a retrain keeping its parent's fine-tuned encoder) only the head
    is refit; otherwise the encoder is fine-tuned when ``config.finetune_layers`` > 0."""
    cfg = config or TrainConfig()
    t0 = time.time()
    examples = examples if examples is not None else datamod.assemble(seed=cfg.seed)
    labels = list(labels or LABELS)
    lab_idx = {lab: i for i, lab in enumerate(labels)}
    bad = sorted({e.label for e in examples} - set(labels))
    if bad:
        raise ValueError(f"training labels {bad} are not in the label list {labels}")
    tr, va = datamod.split(examples, cfg.val_frac, cfg.seed)
    log(f"data: {len(examples)} examples ({len(tr)} train / {len(va)} validation)")
    texts = [e.text for e in examples]
    y = np.array([lab_idx[e.label] for e in examples])
    w = np.array([cfg.mapped_weight if e.group == "mapped" else 1.0 for e in examples])
    finetune = None
    if adapters:
        X = Embedder(cfg.max_tokens, adapters=adapters)(texts, progress=True)
        layers = sorted({int(k.split(".")[0][1:]) for k in adapters})
        finetune = {"method": "LoRA adapters kept from the parent model (only the head is refit)",
                    "file": "adapters.npz", "layers": layers,
                    "rank": int(next(a for k, a in adapters.items() if k.endswith(".A")).shape[0])}
    else:
        X = Embedder(cfg.max_tokens)(texts, progress=True)
    log(f"embeddings: {X.shape} in {time.time() - t0:.0f}s")
    if not adapters and cfg.finetune_layers > 0:
        adapters, finetune, X = _fine_tune(cfg, texts, X, y, w, tr, va, labels, log)
        Embedder(cfg.max_tokens, adapters=adapters).store(texts, X)  # a later retrain reuses them
    head, clf = fit_head(X[tr], y[tr], w[tr], X[va], y[va], labels, cfg.c_grid, cfg.cv_folds,
                         cfg.precision_target, cfg.default_threshold, cfg.seed)
    pv = head.proba(X[va]).argmax(1)
    written_va = [i for i, j in enumerate(va) if examples[j].group == "written"]
    metrics = {"validation": {
        "n": len(va), "accuracy": round(float((pv == y[va]).mean()), 4),
        "macro_f1": round(macro_f1(y[va], pv, len(labels)), 4),
        "written_macro_f1": round(macro_f1(y[va][written_va], pv[written_va], len(labels)), 4)}}
    log(f"head: C={head.C} T={head.temperature:.2f} validation {metrics['validation']}")
    probe = [examples[j].text for j in va[:PROBE_SIZE]]
    calib = [examples[j].text for j in
             sorted(np.random.default_rng(cfg.seed).permutation(tr)[: cfg.calibration_size].tolist())]
    counts = {
        "total": len(examples), "train": len(tr), "validation": len(va),
        "by_label": dict(Counter(e.label for e in examples)),
        "by_label_non_en": dict(Counter(e.label for e in examples if e.lang != "en")),
        "by_source": dict(Counter(e.source for e in examples)),
    }
    out = export.write_model(out_dir, head=head, clf=clf, labels=labels, config=cfg.to_dict(),
                             probe_texts=probe, data_hashes=datamod.source_hashes(), metrics=metrics,
                             counts=counts, parent=parent, adapters=adapters, finetune=finetune,
                             calibration_texts=calib)
    write_reference(out, head.proba(X[va]), [e.label for e in examples], labels)
    log(f"wrote {out} in {time.time() - t0:.0f}s")
    return out


def reference_stats(p_val: np.ndarray, train_labels: list[str], labels: list[str]) -> dict:
    """What drift monitoring compares traffic with: the training label mix, and on the validation split the
    unconfident share and the mean confidence per predicted label."""
    counts = Counter(train_labels)
    k = p_val.argmax(1)
    top = p_val.max(1)
    mean_conf = {lab: round(float(top[k == i].mean()), 4) for i, lab in enumerate(labels) if (k == i).any()}
    return {"label_share": {lab: round(counts.get(lab, 0) / max(len(train_labels), 1), 5) for lab in labels},
            "validation_mean_confidence": mean_conf, "validation_n": int(len(p_val))}


def write_reference(model_dir: Path, p_val: np.ndarray, train_labels: list[str], labels: list[str]) -> None:
    """Add ``reference`` to a written manifest (the manifest is not among the hashed files)."""
    import json

    path = Path(model_dir) / "manifest.json"
    man = json.loads(path.read_text())
    ref = reference_stats(p_val, train_labels, labels)
    thr = np.array([man["thresholds"].get(lab, man["default_threshold"]) for lab in labels])
    ref["validation_unconfident_share"] = round(float((p_val.max(1) < thr[p_val.argmax(1)]).mean()), 4)
    man["reference"] = ref
    path.write_text(json.dumps(man, indent=2, ensure_ascii=False) + "\n")
