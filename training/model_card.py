"""Write MODEL_CARD.md for a model folder from its manifest and an evaluation report (eval.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GROUPS = ("en", "zh", "other")


def _fine_tuning(man: dict[str, Any]) -> str:
    ft = man["base_model"].get("fine_tuning") or {}
    if "seconds" not in ft:
        return "- Encoder fine-tuning: " + ft.get("method", "none (frozen encoder)") + "."
    ly = ft["layers"]
    return (f"- Encoder fine-tuning: LoRA adapters (rank {ft['rank']}, alpha {ft['alpha']:g}) on "
            f"q/k/v/attention-output/FFN of layers {ly[0]}–{ly[-1]}, {ft['epochs']} epochs at lr {ft['lr']:g}, "
            f"trained with a linear head on the training split ({ft['seconds']:.0f} s on CPU); `adapters.npz` "
            "(committed, hash-checked) is " + ("added beside the 4-bit weights in the graph."
                                               if man["quantization"] == "q4" else
                                               "folded into the weights (W + B·A) before the graph is quantised."))


def _graph(man: dict[str, Any]) -> str:
    q = man["quantization"]
    if q == "q4":
        how = f"4-bit weights as MatMulNBits, accuracy_level {man.get('accuracy_level')}"
    elif q == "int8" and man.get("int8_smoothing"):
        sm = man["int8_smoothing"]
        how = (f"onnxruntime dynamic quantisation after SmoothQuant scaling (alpha {sm['alpha']}, activation ranges "
               f"from {sm['calibration_texts']} training texts; `{sm['file']}` committed, hash-checked)")
    else:
        how = "onnxruntime dynamic quantisation" if q == "int8" else "unquantised"
    return f"- Graph: one ONNX graph (encoder + head), quantization `{q}`: {how}."


def render(man: dict[str, Any], ev: dict[str, Any] | None, extra: str = "") -> str:
    L = [f"# Model card: `{man['name']}` ({man['version']})", "",
         "Classifies a prompt (plain text, or an OpenAI chat request: system prompt + last user turn) into the 13 "
         "categories of TAXONOMY.md " + man.get("taxonomy_version", "1.3") + ", with a calibrated score for each, a "
         "per-label confidence threshold, and the prompt's language.", "",
         "## Model", "",
         f"- Encoder: {man['base_model']['model']} from `{man['base_model']['package']}=="
         f"{man['base_model']['version']}` ({man['base_model']['file']}, sha256 "
         f"`{man['base_model']['sha256'][:16]}…`), `query: ` prefix, mean pooling, L2-normalised; "
         f"window {man['max_tokens']} tokens (head + tail kept).",
         _fine_tuning(man),
         f"- Head: {man['head']['type']}, C={man['head']['C']}, temperature {man['head']['temperature']:.3f}.",
         _graph(man),
         f"- Export check vs the sentence-transformers + scikit-learn reference on "
         f"{man['export_check']['probe_size']} probe prompts: top-1 agreement "
         f"{man['export_check']['top1_agreement']:.2%}, max probability difference "
         f"{man['export_check']['max_prob_diff']}.",
         f"- Language ID: `{man['language_detector']}`.",
         "", "## Training data", "",
         f"{man['data']['counts']['total']} examples ({man['data']['counts']['train']} train / "
         f"{man['data']['counts']['validation']} validation); see training/data/DATA_CARD.md.", "",
         "| label | examples | non-English | threshold |", "|---|---|---|---|"]
    for lab in man["labels"]:
        L.append(f"| {lab} | {man['data']['counts']['by_label'].get(lab, 0)} | "
                 f"{man['data']['counts']['by_label_non_en'].get(lab, 0)} | {man['thresholds'].get(lab, 0):.3f} |")
    v = man["metrics"]["validation"]
    L += ["", f"Validation (training-side split): accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f}.", ""]
    if ev:
        m = ev["model_scores"]
        L += ["## Evaluation on gold_v1 (real user prompts; never trained or tuned on)", "",
              "| system | strict macro-F1 (sure) | lenient accuracy | lenient en | lenient zh | lenient other |",
              "|---|---|---|---|---|---|"]

        def row(name: str, s: dict[str, Any]) -> str:
            bl = s["by_language"]
            return (f"| {name} | {s['strict_macro_f1']:.3f} | {s['lenient_accuracy']:.3f} | "
                    + " | ".join(f"{bl[g]['lenient_accuracy']:.3f} (n={bl[g]['n']})" for g in GROUPS) + " |")
        L.append(row("this model", m))
        for b, name in (("tfidf_char_lr", "TF-IDF char n-grams + LR (same data)"),
                        ("zero_shot_descriptions", "zero-shot: nearest label description (same encoder)")):
            if b in ev:
                L.append(row(name, ev[b]))
        bl = m["by_language"]
        L += ["", "Strict macro-F1 by language: " + ", ".join(
            f"{g} {bl[g]['strict_macro_f1']:.3f} (n sure={bl[g]['n_sure']})" for g in GROUPS) + ".",
              f"Confident share {m['confident_share']:.3f}; lenient accuracy of confident predictions "
              f"{m['lenient_accuracy_confident']:.3f}. Language ID accuracy ({ev['language_id']['detector']}): "
              f"{ev['language_id']['accuracy']:.3f}.", "",
              "| label | precision | recall | F1 | support (sure) |", "|---|---|---|---|---|"]
        for lab, s in m["per_label"].items():
            L.append(f"| {lab} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
        L += ["", "Confusion matrix: `reports/eval/confusion.png`.", ""]
    L += ["## Limits", "",
          "- Thin gold labels (translation 15, legal 25, other 3 sure items) make their F1 noisy.",
          "- Chinese and other-language prompts score below English (see the table); most of the Chinese gold "
          "items are AlignBench prompts whose style differs from the training data.",
          "- The training data is partly LLM-assisted team writing; it follows the taxonomy but is not real "
          "traffic.", ""]
    if extra:
        L += [extra, ""]
    return "\n".join(L)


def measured(reports: Path, version: str, quantization: str = "q4") -> str:
    """Language-ID and speed tables from the benchmark reports (bench/langid_compare.py, bench/speed.py)."""
    L = []
    lp = reports / "langid.json"
    if lp.exists():
        d = json.loads(lp.read_text())
        n = d["sizes"]
        L += ["## Language ID (bench/langid_compare.py)", "",
              f"| detector | gold `lang` ({n['gold']}) | mgsm, 11 languages ({n['mgsm']}) | short prompts, 2-6 words "
              f"({n['short_2_6_words']}) | texts/s |", "|---|---|---|---|---|"]
        for name, r in d["results"].items():
            L.append(f"| {name} | {r['gold']:.3f} | {r['mgsm']:.3f} | {r['short_2_6_words']:.3f} | "
                     f"{r['texts_per_s']} |")
        L.append("")
    for sp in sorted(reports.glob("speed*.json")):
        d = json.loads(sp.read_text())
        rows = d["rows"]
        tag = d.get("model_version")
        L += [f"## Speed (`{sp}`: bench/speed.py, same {rows[0]['n']} gold prompts, one run on 2 cores"
              + (f", model {tag}" if tag else "") + ")", "",
              "| engine | texts/s batch 1 | texts/s batch 32 | p50 ms | p99 ms | peak RSS MB |",
              "|---|---|---|---|---|---|"]
        for r in rows:
            L.append(f"| {r['engine']} | {r['texts_per_s_b1']} | {r['texts_per_s_b32']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['peak_rss_mb'] if r.get('peak_rss_mb') is not None else '—'} |")
        by = {r["engine"]: r for r in rows}
        q = quantization if tag == version else "q4"  # every earlier shipped version was q4
        if "st" in by and f"onnx-{q}" in by:
            L += ["", f"{'This' if tag == version else 'The then-shipped'} {q} graph vs sentence-transformers + "
                      f"scikit-learn head at batch 32: "
                      f"{by[f'onnx-{q}']['texts_per_s_b32'] / by['st']['texts_per_s_b32']:.1f}x (target >= 3x)."]
        if d.get("note"):
            L += ["", f"Note: {d['note']}."]
        if tag and tag != version:
            L += ["", f"(measured on {tag}, an earlier version, not this one)"]
        L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    model = Path(args[0])
    ev_path = Path(args[1]) if len(args) > 1 else Path("reports/eval/eval.json")
    man = json.loads((model / "manifest.json").read_text())
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else None
    (model / "MODEL_CARD.md").write_text(render(man, ev, measured(ev_path.parent.parent, man["version"],
                                                                  man["quantization"])))
    print(f"wrote {model / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
