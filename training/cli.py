"""``prompt-tagger models list|show|promote|rollback`` and ``prompt-tagger drift``; imports nothing heavy."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def add_retrain_arguments(s: argparse.ArgumentParser) -> None:
    """The ``train`` options for a new version from a parent model (see ``training.retrain``)."""
    s.add_argument("--add", action="append", metavar="NEW.jsonl",
                   help="labelled rows (JSONL/CSV with text or request, and label); repeatable")
    s.add_argument("--from", dest="parent", metavar="MODEL",
                   help="parent version under models/ (default: the served models/default)")
    s.add_argument("--feedback-db", metavar="SQLITE", help="also use the service's stored feedback")
    s.add_argument("--new-label", action="append", metavar="LABEL", help="declare a new category; repeatable")
    s.add_argument("--skip-invalid", action="store_true", help="leave out rows that failed validation")
    s.add_argument("--relabel", action="store_true", help="new labels win over the training data's for a text")
    s.add_argument("--search-c", action="store_true", help="redo the C search (default: keep the parent's C)")
    s.add_argument("--gold", help="gold set for the metrics and gate (default shared/data/eval/gold_v1.jsonl)")
    s.add_argument("--models-dir", help="model versions root (default models/, or PROMPT_TAGGER_MODELS)")
    s.add_argument("--promote", action="store_true", help="promote the new version when it passes the gate")
    _gate_arguments(s)


def _gate_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--max-macro-drop", type=float, default=0.5, help="gate: points of strict macro-F1")
    s.add_argument("--max-label-drop", type=float, default=3.0, help="gate: points of any label's F1")


def _registry(args: argparse.Namespace) -> Any:
    from .registry import Registry

    return Registry(Path(args.models_dir) if args.models_dir else None)


def cmd_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    print(f"{'':2s}{'name':28s} {'version':36s} {'parent':36s} {'labels':>6s} {'rows':>7s} {'gold F1':>8s}")
    for r in reg.rows():
        f1 = f"{r['gold_strict_macro_f1']:.4f}" if r["gold_strict_macro_f1"] is not None else "-"
        print(f"{'*' if r['served'] else ' ':2s}{r['name']:28s} {r['version'] or '-':36s} {r['parent'] or '-':36s} "
              f"{r['labels']:6d} {r['rows'] or 0:7d} {f1:>8s}")
    print(f"served ({reg.served}): {reg.served_version()}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .registry import read_manifest

    man = read_manifest(_registry(args).folder(args.name))
    keys = args.keys or ["version", "parent", "created_at", "labels", "lineage", "metrics", "reference"]
    print(json.dumps({k: man.get(k) for k in keys}, indent=2, ensure_ascii=False))
    return 0


def _reload(url: str | None, key: str | None) -> None:
    if not url:
        print("reload the service: POST /admin/reload (or run it with PROMPT_TAGGER_RELOAD_WATCH_S)")
        return
    import urllib.request

    req = urllib.request.Request(url.rstrip("/") + "/admin/reload", method="POST",
                                 headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=120) as r:
        print(f"service reloaded: {r.read().decode()}")


def cmd_promote(args: argparse.Namespace) -> int:
    from .gate import GateConfig, default_gold, gate_candidate

    reg = _registry(args)
    gold = Path(args.gold) if args.gold else default_gold()
    g = gate_candidate(reg, args.name, gold, GateConfig(args.max_macro_drop, args.max_label_drop), args.engine)
    print(g.format())
    if not g.passed and not args.force:
        reg.record_rejection(args.name, g.to_dict())
        print(f"not promoted: the served model {reg.served_version()} stays in place (--force overrides)")
        return 1
    entry = reg.promote(args.name, gate=g.to_dict(), forced=not g.passed)
    print(f"promoted {args.name} ({entry['version']}) to {reg.served}" + (" despite the gate (--force)"
                                                                          if entry["forced"] else ""))
    _reload(args.reload_url, args.admin_key)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    reg = _registry(args)
    target = args.to or reg.rollback_target()
    entry = reg.promote(target, action="rollback")
    print(f"rolled back to {target} ({entry['version']}); {reg.served} now serves it")
    _reload(args.reload_url, args.admin_key)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from classifier import drift
    from classifier.model import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    manifest = json.loads((model / "manifest.json").read_text())
    cur = drift.aggregate(read_tagged(Path(args.tagged)))
    prev = drift.aggregate(read_tagged(Path(args.baseline))) if args.baseline else None
    r = drift.report(cur, manifest, prev, top=args.top)
    print(json.dumps(r, indent=2, ensure_ascii=False) if args.json else drift.format_report(r))
    return 0


def read_tagged(path: Path) -> list[tuple[str, float, bool]]:
    """(category, confidence, confident) from `prompt-tagger tag` JSONL or batch output (Parquet file/folder)."""
    if path.is_dir() or path.suffix == ".parquet":
        import pyarrow.dataset as ds

        t = ds.dataset(str(path), format="parquet").to_table(columns=["category", "confidence", "confident"])
        cols = [t[c].to_pylist() for c in ("category", "confidence", "confident")]
        return list(zip(*cols, strict=True))
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            if "category" not in d:
                raise ValueError(f"{path}:{n}: expected tagged rows with category/confidence/confident (the "
                                 f"output of `prompt-tagger tag`), got keys {sorted(d)[:8]}")
            out.append((d["category"], float(d.get("confidence", 0.0)), bool(d.get("confident", True))))
    return out


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="model versions: list, show, promote (gated), rollback")
    m.add_argument("--models-dir", help="versions root (default models/, or PROMPT_TAGGER_MODELS)")
    ms = m.add_subparsers(dest="models_cmd", required=True)
    s = ms.add_parser("list", help="versions, their lineage and gold scores; * marks the served one")
    s.set_defaults(fn=cmd_list)
    s = ms.add_parser("show", help="a version's manifest: lineage, metrics, drift reference")
    s.add_argument("name")
    s.add_argument("--keys", nargs="*")
    s.set_defaults(fn=cmd_show)
    for name, fn, help_ in (("promote", cmd_promote, "serve a version if it passes the gold-set gate"),
                            ("rollback", cmd_rollback, "serve the version the current one replaced")):
        s = ms.add_parser(name, help=help_)
        if name == "promote":
            s.add_argument("name")
            s.add_argument("--gold")
            s.add_argument("--engine", choices=["head", "graph"], default="head",
                           help="gold scoring: head on cached fp32 embeddings (fast) or the exported graph")
            s.add_argument("--force", action="store_true", help="promote even if the gate fails (recorded)")
            _gate_arguments(s)
        else:
            s.add_argument("--to", help="a version name (default: the one the current version replaced)")
        s.add_argument("--reload-url", help="running service to reload, e.g. http://127.0.0.1:8000")
        s.add_argument("--admin-key", default=os.environ.get("PROMPT_TAGGER_ADMIN_KEY"))
        s.set_defaults(fn=fn)

    s = sub.add_parser("drift", help="drift of tagged traffic vs the model's training data")
    s.add_argument("tagged", help="`prompt-tagger tag` JSONL, or batch Parquet output")
    s.add_argument("--model", help="the model that tagged it (default models/default)")
    s.add_argument("--baseline", help="earlier tagged traffic to compare the category mix with")
    s.add_argument("--top", type=int, default=5)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_drift)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `prompt-tagger models ...` or `prompt-tagger drift ...`")
