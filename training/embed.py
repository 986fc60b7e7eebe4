"""Sentence embeddings for training, cached on disk by text sha256 (plus the window when the text is truncated:
a text that fits in the window has the same embedding at every window, so 128/256/512 share entries).

The default backend runs the fp32 ONNX encoder (the same graph the model ships, before quantisation), which
matches the sentence-transformers model to 1e-6 (tests check it) and runs faster on CPU; ``backend="st"``
runs sentence-transformers itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier import build
from classifier import tokenizer as tokmod


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, np.ndarray] = {}
        if path.exists():
            z = np.load(path, allow_pickle=False)
            self.data = dict(zip(z["keys"].tolist(), z["vecs"], strict=False))
        self.dirty = False

    def save(self) -> None:
        if not self.dirty:
            return
        keys = np.array(list(self.data), dtype="U32")
        vecs = np.stack(list(self.data.values())).astype(np.float32)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vecs=vecs)
        tmp.replace(self.path)
        self.dirty = False


class Embedder:
    def __init__(self, max_tokens: int = 256, backend: str = "onnx", batch_size: int = 32,
                 threads: int = 0, adapters: dict[str, np.ndarray] | None = None) -> None:
        from tokenizers import Tokenizer

        self.max_tokens = max_tokens
        self.backend = backend
        self.batch_size = batch_size
        self.tok = Tokenizer.from_file(str(build.tokenizer_path()))
        self.threads, self.adapters = threads, adapters
        self._sess = None  # the fp32 encoder is built and loaded on the first text missing from the cache
        if backend == "st":
            from . import st_model

            self.st = st_model.load_cached(max_tokens, adapters)
        elif backend != "onnx":
            raise ValueError(f"backend must be 'onnx' or 'st', got {backend!r}")
        tag = build.adapters_hash(adapters)  # a fine-tuned encoder has its own cache
        self.cache = EmbeddingCache(build.cache_dir() / (f"emb-{tag}.npz" if tag else "emb.npz"))

    def store(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        """Put embeddings computed elsewhere (the fine-tuning stack, same arithmetic) into the cache."""
        for k, v in zip(self.keys(texts), vecs, strict=True):
            self.cache.data[k] = np.asarray(v, np.float32)
        self.cache.dirty = True
        self.cache.save()

    def keys(self, texts: Sequence[str]) -> list[str]:
        encs = self.tok.encode_batch([tokmod.QUERY_PREFIX + tokmod.clip_chars(t, self.max_tokens) for t in texts])
        return [text_key(t) if len(e.ids) <= self.max_tokens else f"{text_key(t)[:26]}@{self.max_tokens}"
                for t, e in zip(texts, encs, strict=False)]

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask = tokmod.encode(self.tok, texts, self.max_tokens)
        if self.backend == "onnx":
            if self._sess is None:
                import onnxruntime as ort

                so = ort.SessionOptions()
                if self.threads:
                    so.intra_op_num_threads = self.threads
                self._sess = ort.InferenceSession(str(build.encoder_fp32(adapters=self.adapters)), so,
                                                  providers=["CPUExecutionProvider"])
            return self._sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        from . import st_model
        return st_model.embed_ids(self.st, ids, mask, self.batch_size)

    def __call__(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        keys = self.keys(texts)
        todo = sorted({k: t for k, t in zip(keys, texts, strict=False) if k not in self.cache.data}.items(),
                      key=lambda kv: len(kv[1]))  # length-sorted batches: little padding
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            vecs = self._run([t for _, t in chunk])
            for (k, _), v in zip(chunk, vecs, strict=False):
                self.cache.data[k] = v
            self.cache.dirty = True
            if progress and (i // self.batch_size) % 20 == 0:
                print(f"  embedded {i + len(chunk)}/{len(todo)}", flush=True)
            if (i // self.batch_size) % 100 == 99:
                self.cache.save()
        self.cache.save()
        return np.stack([self.cache.data[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)
