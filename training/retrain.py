"""``prompt-tagger train --add NEW.jsonl [--from MODEL]``: a new model version from the parent's data plus new rows.

The parent's data is the base assembly (shared sources + team data, checked against the parent's data hashes)
plus the rows every ancestor added, which each version keeps in ``added.jsonl``. New rows (files and the
service's feedback table) are validated first (``training.newdata``). The new version's manifest carries its
lineage: parent, data hashes, what was added, the validation report, gold metrics and their deltas.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import data as datamod
from . import newdata
from .config import TrainConfig

ADDED = "added.jsonl"


class RetrainError(ValueError):
    """New data failed validation (the report says what and where), or the parent cannot be retrained."""


@dataclass
class RetrainResult:
    out: Path
    validation: newdata.Validation
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def read_added(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / ADDED
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_added(folder: Path, rows: list[dict[str, Any]]) -> str:
    body = "".join(json.dumps({"text": r["text"], "label": r["label"], "where": r["where"]}, ensure_ascii=False)
                   + "\n" for r in rows).encode()
    (Path(folder) / ADDED).write_bytes(body)
    (Path(folder) / ADDED).chmod(0o644)
    return hashlib.sha256(body).hexdigest()


def _hash_rows(rows: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['label']}\t{r['text']}\0".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def build_examples(base: list[datamod.Example], added: list[dict[str, Any]]) -> list[datamod.Example]:
    """Base examples, minus any that an added row relabels, plus the added rows (group ``added``, weight 1)."""
    keys = {newdata.norm_key(r["text"]) for r in added}
    out = [e for e in base if newdata.norm_key(e.text) not in keys]
    out += [datamod.Example(r["text"], r["label"], "und", "added", "added", r["text"]) for r in added]
    return out


def retrain(out_dir: Path, parent_dir: Path, *, add: list[Path] = (), feedback_db: Path | None = None,
            new_labels: list[str] = (), skip_invalid: bool = False, relabel: bool = False,
            search_c: bool = False, min_new_label: int = 20, gold: Path | None = None, gate_engine: str = "head",
            registry: Any = None, base: list[datamod.Example] | None = None,
            train_fn: Callable[..., Path] | None = None, log: Callable[[str], None] = print) -> RetrainResult:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    parent_dir = Path(parent_dir)
    pman = json.loads((parent_dir / "manifest.json").read_text())
    labels = list(pman["labels"])
    cfg = TrainConfig.from_dict(pman["training_config"]) if "training_config" in pman else TrainConfig()
    if not search_c and pman.get("head", {}).get("C"):
        cfg = replace(cfg, c_grid=(float(pman["head"]["C"]),))

    plin = pman.get("lineage", {})
    parent_added = read_added(parent_dir)
    want = plin.get("added", {}).get("sha256")
    if want and (parent_dir / ADDED).exists() and datamod.sha256_file(parent_dir / ADDED) != want:
        raise RetrainError(f"{parent_dir / ADDED} does not match the parent's manifest; restore it from the "
                           "parent's version folder")
    if base is None:
        base = datamod.assemble(seed=cfg.seed)
        base_hashes = datamod.source_hashes()
    else:
        base_hashes = {"(given)": _hash_rows([{"text": e.text, "label": e.label} for e in base])}
    changed = sorted(k for k, v in base_hashes.items() if pman.get("data", {}).get("hashes", {}).get(k) not in
                     (None, v))
    timings["assemble"] = time.perf_counter() - t0

    rows: list[newdata.Row] = []
    issues: list[newdata.Issue] = []
    inputs = []
    for path in add:
        r, i = newdata.read_labelled(Path(path))
        rows += r
        issues += i
        inputs.append({"path": str(path), "sha256": datamod.sha256_file(Path(path)), "rows": len(r)})
    fb = None
    if feedback_db is not None:
        prev = plin.get("feedback", {})
        after = int(prev.get("max_id", 0)) if prev.get("db") == str(Path(feedback_db).resolve()) else 0
        r, i, max_id = newdata.read_feedback(Path(feedback_db), after)
        rows += r
        issues += i
        fb = {"db": str(Path(feedback_db).resolve()), "after_id": after, "max_id": max_id, "rows": len(r)}
    training_map = {newdata.norm_key(e.text): e.label for e in build_examples(base, parent_added)}
    v = newdata.validate(rows, labels, new_labels, training_map, min_new_label=min_new_label, relabel=relabel,
                         issues=issues)
    log(v.format())
    fatal = [i for i in v.errors if i.kind in newdata.FATAL]
    if fatal or (v.errors and not skip_invalid):
        raise RetrainError(f"{len(v.errors)} problems in the new data (listed above); fix them"
                           + ("" if fatal else ", or pass --skip-invalid to leave those rows out"
                              + (", or --relabel to let new labels win over the training data"
                                 if any(i.kind == "conflicts_with_training" for i in v.errors) else "")))
    if not v.rows and not new_labels:
        raise RetrainError("no usable new rows: nothing to retrain on")
    if v.errors:
        log(f"--skip-invalid: leaving out {len(v.errors)} rows with errors")

    added = parent_added + newdata.as_dicts(v.rows)
    examples = build_examples(base, added)
    labels_out = labels + [lab for lab in new_labels if lab not in labels]
    log(f"training data: {len(base)} base + {len(parent_added)} added by ancestors + {len(v.rows)} new rows "
        f"-> {len(examples)} examples, {len(labels_out)} labels")
    if train_fn is None:
        from .train import train as train_fn
    t1 = time.perf_counter()
    from classifier import build

    adapters = build.model_adapters(parent_dir, pman)  # a fine-tuned parent encoder is kept: only the head is refit
    extra = {"adapters": adapters} if adapters else {}
    out = Path(train_fn(Path(out_dir), cfg, examples, labels_out, parent=pman.get("version"), log=log, **extra))
    timings["train_and_export"] = time.perf_counter() - t1

    added_sha = write_added(out, added)
    man = json.loads((out / "manifest.json").read_text())
    man["parent"] = pman.get("version")
    man["lineage"] = {
        "parent": {"version": pman.get("version"), "path": str(parent_dir), "data_hashes": pman.get("data", {})
                   .get("hashes", {}), "added_sha256": want},
        "base": {"rows": len(base), "changed_since_parent": changed},
        "added": {"file": ADDED, "sha256": added_sha, "rows": len(added), "from_ancestors": len(parent_added),
                  "new": len(v.rows), "by_label": dict(Counter(r["label"] for r in added)),
                  "data_hash": _hash_rows(added)},
        "inputs": inputs, "feedback": fb, "new_labels": [lab for lab in new_labels if lab not in labels],
        "validation": v.summary() | {"skip_invalid": skip_invalid, "relabel": relabel},
    }
    if gold is not None:
        t2 = time.perf_counter()
        from .gate import deltas, scores_for

        cand = scores_for(out, gold, gate_engine, None)
        par = scores_for(parent_dir, gold, gate_engine, registry)
        man.setdefault("metrics", {})["gold"] = cand
        man["metrics"]["gold_deltas_vs_parent"] = deltas(cand, par)
        pv = pman.get("metrics", {}).get("validation", {})
        nv = man["metrics"].get("validation", {})
        if pv.get("macro_f1") is not None and nv.get("macro_f1") is not None:
            man["metrics"]["validation_delta_vs_parent"] = {"macro_f1_pt": round(100 * (nv["macro_f1"] -
                                                                                        pv["macro_f1"]), 2),
                                                            "note": "validation splits differ between versions"}
        timings["gold"] = time.perf_counter() - t2
        d = man["metrics"]["gold_deltas_vs_parent"]
        log(f"gold ({cand['gold']}, engine {gate_engine}): strict macro-F1 {par['strict_macro_f1']:.4f} -> "
            f"{cand['strict_macro_f1']:.4f} ({d['strict_macro_f1_pt']:+.2f} pt)")
    (out / "manifest.json").write_text(json.dumps(man, indent=2, ensure_ascii=False) + "\n")
    secs = time.perf_counter() - t0
    timings = {k: round(x, 1) for k, x in timings.items()}
    log(f"retrained {out} in {secs:.1f}s ({', '.join(f'{k} {x:.1f}s' for k, x in timings.items())})")
    return RetrainResult(out, v, secs, timings, man)


def cmd_retrain(args: Any) -> int:
    """``prompt-tagger train`` with ``--add``/``--from``/``--feedback-db``/``--new-label``."""
    from .gate import GateConfig, default_gold, gate_candidate
    from .registry import Registry

    reg = Registry(Path(args.models_dir) if getattr(args, "models_dir", None) else None)
    parent = reg.folder(args.parent) if args.parent else reg.served
    out = Path(args.output) if args.output else reg.root / reg.next_name()
    gold = Path(args.gold) if args.gold else default_gold()
    try:
        res = retrain(out, parent, add=[Path(p) for p in args.add or []],
                      feedback_db=Path(args.feedback_db) if args.feedback_db else None,
                      new_labels=args.new_label or [], skip_invalid=args.skip_invalid, relabel=args.relabel,
                      search_c=args.search_c, gold=gold if gold.exists() else None, registry=reg)
    except RetrainError as exc:
        print(f"prompt-tagger: train: {exc}")
        return 2
    print(f"retraining time: {res.seconds:.1f}s")
    if res.out.parent.resolve() != reg.root.resolve() or not gold.exists():
        return 0
    g = gate_candidate(reg, res.out.name, gold, GateConfig(args.max_macro_drop, args.max_label_drop))
    print(g.format())
    if args.promote and g.passed:
        reg.promote(res.out.name, gate=g.to_dict())
        print(f"promoted {res.out.name} to {reg.served}; reload the service: POST /admin/reload")
    elif g.passed:
        print(f"promote with: prompt-tagger models promote {res.out.name}")
    else:
        print(f"not promoted: the served model {reg.served_version()} stays in place")
    return 0
