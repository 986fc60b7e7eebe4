"""The fast tier, served with numpy only: a static token-embedding table + a linear head (``fast.npz``).

A prompt's vector is the sum of its tokens' rows (SIF weights are folded into the rows when the table is built),
L2-normalised; probabilities are a softmax of a linear head on it. No encoder runs: the cost is the tokenizer
plus a gather and one small matrix product, so it answers in microseconds what the transformer answers in
milliseconds. ``training/fast_tier.py`` builds the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .tokenizer import clip_chars

FAST_FILE = "fast.npz"
MAX_TOKENS = 512  # the fast tier reads more of a long prompt than the transformer does: it costs nothing


def pool(token_lists: Sequence[Sequence[int]], lookup: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, dim) L2-normalised sums of the table rows of each text's known tokens; all-zero rows when none."""
    out = np.zeros((len(token_lists), vectors.shape[1]), dtype=np.float32)
    rows = [lookup[np.asarray(ids, dtype=np.int64)] if len(ids) else np.zeros(0, np.int64) for ids in token_lists]
    rows = [r[r >= 0] for r in rows]
    lens = np.array([len(r) for r in rows])
    live = np.flatnonzero(lens)
    if len(live):
        flat = np.concatenate([rows[i] for i in live])
        starts = np.concatenate([[0], np.cumsum(lens[live])[:-1]])
        out[live] = np.add.reduceat(vectors[flat].astype(np.float32), starts, axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class FastTier:
    """Token table + head. ``proba(texts)`` gives (n, n_labels); rows with no known token are all zero."""

    def __init__(self, token_ids: np.ndarray, vectors: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                 tokenizer: Any, vocab_size: int, thresholds: dict[str, float] | None = None) -> None:
        self.lookup = np.full(vocab_size, -1, dtype=np.int64)
        self.lookup[token_ids] = np.arange(len(token_ids))
        self.vectors = vectors
        self.weight = weight.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self._tok = tokenizer
        self.thresholds = dict(thresholds or {})  # per-label "confident" cut on the fast tier's own scores

    @classmethod
    def load(cls, path: str | Path, tokenizer: Any, thresholds: dict[str, float] | None = None) -> FastTier:
        z = np.load(path, allow_pickle=False)
        vectors = z["vectors"].astype(np.float16) * z["scales"][:, None]  # int8 rows x fp16 per-row scale
        return cls(z["token_ids"], vectors, z["weight"], z["bias"], tokenizer, tokenizer.get_vocab_size(),
                   thresholds)

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        encs = self._tok.encode_batch([clip_chars(t, MAX_TOKENS) for t in texts], add_special_tokens=False)
        half = MAX_TOKENS // 2
        return [e.ids if len(e.ids) <= MAX_TOKENS else e.ids[:half] + e.ids[-half:] for e in encs]

    def features(self, texts: Sequence[str]) -> np.ndarray:
        return pool(self.tokens(texts), self.lookup, self.vectors)

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        x = self.features(texts)
        p = softmax(x @ self.weight + self.bias)
        blank = np.array([not t.strip() for t in texts], dtype=bool)
        p[~x.any(1) | blank] = 0.0
        return p.astype(np.float32)


def quantize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: row = q * scale."""
    v = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(v).max(1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(v / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales.astype(np.float16)


def save(path: Path, token_ids: np.ndarray, vectors: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> Path:
    q, scales = quantize_rows(vectors)
    np.savez_compressed(path, token_ids=token_ids.astype(np.int32), vectors=q, scales=scales,
                        weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    return path
