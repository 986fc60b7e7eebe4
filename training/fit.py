"""The linear head: logistic regression on frozen embeddings, C by cross-validation, temperature scaling
and per-label thresholds on the training-side validation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from classifier.fast import softmax

from .deps import require


@dataclass
class Head:
    labels: list[str]
    weight: np.ndarray  # (dim, n_labels), temperature folded in
    bias: np.ndarray  # (n_labels,)
    C: float
    temperature: float
    thresholds: dict[str, float]
    cv_scores: dict[str, float]

    def proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(X @ self.weight + self.bias)


def fit_lr(X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float, seed: int):
    lm = require("sklearn.linear_model")
    clf = lm.LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    clf.fit(X, y, sample_weight=w)
    return clf


def choose_c(X: np.ndarray, y: np.ndarray, w: np.ndarray, grid: tuple[float, ...], folds: int,
             seed: int) -> tuple[float, dict[str, float]]:
    if len(grid) == 1:  # nothing to choose (a retrain that keeps its parent's C): skip the folds
        return float(grid[0]), {}
    ms = require("sklearn.model_selection")
    metrics = require("sklearn.metrics")
    skf = ms.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {}
    for C in grid:
        f1s = []
        for tr, te in skf.split(X, y):
            clf = fit_lr(X[tr], y[tr], w[tr], C, seed)
            f1s.append(metrics.f1_score(y[te], clf.predict(X[te]), average="macro"))
        scores[str(C)] = float(np.mean(f1s))
    best = max(grid, key=lambda c: scores[str(c)])
    return best, scores


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.2), np.log(5.0), 81)):
        p = softmax(logits / t)
        nll = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def choose_thresholds(p: np.ndarray, y: np.ndarray, labels: list[str], target: float,
                      default: float) -> dict[str, float]:
    """Per label: the lowest top score at which validation precision of that label reaches ``target``."""
    pred = p.argmax(1)
    top = p.max(1)
    out = {}
    for k, lab in enumerate(labels):
        sel = pred == k
        if sel.sum() < 5:
            out[lab] = default
            continue
        s = top[sel]
        ok = (y[sel] == k)
        order = np.argsort(-s)
        prec = np.cumsum(ok[order]) / np.arange(1, len(order) + 1)
        # lowest threshold such that every prefix from there down keeps precision >= target
        passing = np.where(prec >= target)[0]
        if len(passing) == 0:
            out[lab] = float(min(0.95, s.max()))
            continue
        cut = passing.max()
        out[lab] = float(max(min(s[order][cut], 0.95), 0.05))
    return out


def fit_head(X: np.ndarray, y: np.ndarray, w: np.ndarray, Xv: np.ndarray, yv: np.ndarray,
             labels: list[str], grid: tuple[float, ...], folds: int, target: float, default: float,
             seed: int) -> tuple[Head, object]:
    C, cv = choose_c(X, y, w, grid, folds, seed)
    clf = fit_lr(X, y, w, C, seed)
    T = fit_temperature(clf.decision_function(Xv), yv)
    W = (clf.coef_.T / T).astype(np.float32)
    b = (clf.intercept_ / T).astype(np.float32)
    head = Head(list(labels), W, b, C, T, {}, cv)
    head.thresholds = choose_thresholds(head.proba(Xv), yv, list(labels), target, default)
    return head, clf
