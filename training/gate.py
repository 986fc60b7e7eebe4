"""The promotion gate: a candidate replaces the served model only if it does not regress on the gold set.

Gold is used here to *measure* (gate and manifest deltas), never to train or tune. Two engines score a model:
``head`` (default) applies the model's head to the fp32 encoder embeddings of the gold texts, which are cached
on disk, so scoring takes seconds; ``graph`` runs the exported ONNX graph through ``Classifier.predict``
(slower; the export check already holds the graph to >= 99.5% top-1 agreement with the head).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from classifier.text import to_text

from . import data as datamod
from .evaluate import score


@dataclass
class GateConfig:
    max_macro_drop: float = 0.5  # points of strict macro-F1
    max_label_drop: float = 3.0  # points of any label's F1

    def __post_init__(self) -> None:
        if self.max_macro_drop < 0 or self.max_label_drop < 0:
            raise ValueError(f"gate limits are drops in points and must be >= 0, got macro {self.max_macro_drop}, "
                             f"label {self.max_label_drop}")


@dataclass
class GateResult:
    passed: bool
    candidate: str
    current: str
    macro: tuple[float, float]
    regressions: list[dict[str, Any]] = field(default_factory=list)
    label_deltas: dict[str, float] = field(default_factory=dict)
    config: dict[str, float] = field(default_factory=dict)
    gold: str = ""
    lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("lines")
        return d

    def format(self) -> str:
        return "\n".join(self.lines)


def default_gold() -> Path:
    return datamod.shared_data_dir() / "eval" / "gold_v1.jsonl"


def _predict_head(model_dir: Path, manifest: dict[str, Any], texts: list[str]) -> list[str]:
    from .embed import Embedder

    z = np.load(Path(model_dir) / "head.npz", allow_pickle=False)
    from classifier import build

    X = Embedder(int(manifest["max_tokens"]), adapters=build.model_adapters(model_dir, manifest))(texts)
    labels = manifest["labels"]
    return [labels[k] for k in (X @ z["weight"] + z["bias"]).argmax(1)]


def _predict_graph(model_dir: Path, texts: list[str]) -> list[str]:
    from classifier import Classifier

    return [t.category for t in Classifier.load(model_dir).predict(texts)]


def gold_scores(model_dir: Path, gold_path: Path, engine: str = "head") -> dict[str, Any]:
    """Strict macro-F1 and per-label F1 of one model folder on the gold set."""
    if engine not in ("head", "graph"):
        raise ValueError(f"engine must be 'head' or 'graph', got {engine!r}")
    man = json.loads((Path(model_dir) / "manifest.json").read_text())
    gold = datamod.load_gold(gold_path)
    texts = [to_text(g["text"]) for g in gold]
    pred = _predict_head(model_dir, man, texts) if engine == "head" else _predict_graph(model_dir, texts)
    s = score(gold, pred, list(man["labels"]))
    return {"gold": Path(gold_path).name, "gold_sha256": datamod.sha256_file(Path(gold_path)), "engine": engine,
            "n": s["n"], "n_sure": s["n_sure"], "strict_macro_f1": s["strict_macro_f1"],
            "lenient_accuracy": s["lenient_accuracy"],
            "per_label": {lab: {"f1": v["f1"], "support": v["support"]} for lab, v in s["per_label"].items()}}


def deltas(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Candidate minus reference, in points (x100), for the macro score and each label both have support for."""
    per = {lab: round(100 * (v["f1"] - old["per_label"][lab]["f1"]), 2) for lab, v in new["per_label"].items()
           if lab in old["per_label"] and v["support"] > 0}
    return {"strict_macro_f1_pt": round(100 * (new["strict_macro_f1"] - old["strict_macro_f1"]), 2),
            "lenient_accuracy_pt": round(100 * (new["lenient_accuracy"] - old["lenient_accuracy"]), 2),
            "per_label_f1_pt": per}


def check(candidate: dict[str, Any], current: dict[str, Any], cfg: GateConfig, candidate_name: str,
          current_name: str) -> GateResult:
    d = deltas(candidate, current)
    macro_old, macro_new = current["strict_macro_f1"], candidate["strict_macro_f1"]
    regressions = []
    if -d["strict_macro_f1_pt"] > cfg.max_macro_drop:
        regressions.append({"what": "strict_macro_f1", "from": macro_old, "to": macro_new,
                            "delta_pt": d["strict_macro_f1_pt"], "limit_pt": -cfg.max_macro_drop})
    for lab, dp in sorted(d["per_label_f1_pt"].items(), key=lambda kv: kv[1]):
        if -dp > cfg.max_label_drop:
            regressions.append({"what": lab, "from": current["per_label"][lab]["f1"],
                                "to": candidate["per_label"][lab]["f1"], "delta_pt": dp,
                                "limit_pt": -cfg.max_label_drop})
    passed = not regressions
    lines = [f"gate: candidate {candidate_name} vs served {current_name} on {candidate['gold']} "
             f"({candidate['n_sure']} sure items, engine {candidate['engine']})",
             f"  strict macro-F1 {macro_old:.4f} -> {macro_new:.4f} ({d['strict_macro_f1_pt']:+.2f} pt; limit "
             f"-{cfg.max_macro_drop:.2f} pt)"]
    worst = sorted(d["per_label_f1_pt"].items(), key=lambda kv: kv[1])
    if worst:
        lab, dp = worst[0]
        lines.append(f"  per-label F1 (limit -{cfg.max_label_drop:.2f} pt): worst {lab} {dp:+.2f} pt, best "
                     f"{worst[-1][0]} {worst[-1][1]:+.2f} pt")
    new_labels = [lab for lab in candidate["per_label"] if lab not in current["per_label"]]
    if new_labels:
        lines.append(f"  new labels (not in the served model, no gold support needed): {', '.join(new_labels)}")
    for r in regressions:
        what = "strict macro-F1" if r["what"] == "strict_macro_f1" else f"label {r['what']} F1"
        lines.append(f"  REGRESSION {what}: {r['from']:.4f} -> {r['to']:.4f} ({r['delta_pt']:+.2f} pt, limit "
                     f"{r['limit_pt']:+.2f} pt)")
    lines.append(f"gate: {'PASSED' if passed else 'FAILED'}")
    return GateResult(passed, candidate_name, current_name, (macro_old, macro_new), regressions,
                      d["per_label_f1_pt"], asdict(cfg), candidate["gold"], lines)


def scores_for(folder: Path, gold_path: Path, engine: str, registry: Any = None) -> dict[str, Any]:
    """``gold_scores`` with a cache in the registry keyed by model version, gold hash and engine."""
    version = json.loads((Path(folder) / "manifest.json").read_text())["version"]
    sha = datamod.sha256_file(Path(gold_path))
    if registry is not None:
        hit = registry.cached_scores(version, sha, engine)
        if hit is not None:
            return hit
    s = gold_scores(folder, gold_path, engine)
    if registry is not None:
        registry.cache_scores(version, sha, engine, s)
    return s


def gate_candidate(registry: Any, name: str, gold_path: Path, cfg: GateConfig, engine: str = "head") -> GateResult:
    """The gate for version ``name`` against the served model (``models/default``)."""
    cand = scores_for(registry.folder(name), gold_path, engine, registry)
    cur = scores_for(registry.served, gold_path, engine, registry)
    version = json.loads((registry.folder(name) / "manifest.json").read_text())["version"]
    return check(cand, cur, cfg, f"{name} ({version})", str(registry.served_version()))
