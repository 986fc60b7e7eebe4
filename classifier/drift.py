"""Drift watch: recent traffic against what the model was trained on.

Three signals, each with the reason it matters:

* the unconfident share (predictions under their label's threshold) against the validation split's;
* the population stability index (PSI) of the predicted category mix against the training label mix (and,
  where given, against an earlier traffic window, which is usually the more telling of the two: the training
  mix is set by how the data was assembled, not by traffic);
* the labels whose mean confidence fell most.

Pure Python over per-category aggregates ``{label: (n, n_unconfident, confidence_sum)}``, so the service can
compute them in SQL and the CLI from a tagged file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

Counts = dict[str, tuple[int, int, float]]
PSI_EPS = 1e-4
PSI_LEVELS = ((0.1, "stable"), (0.25, "moderate shift"), (math.inf, "significant shift"))


def aggregate(records: Iterable[tuple[str, float, bool]]) -> Counts:
    """(category, confidence, confident) records -> per-category (n, n_unconfident, confidence sum)."""
    out: dict[str, list[float]] = {}
    for cat, conf, ok in records:
        a = out.setdefault(str(cat), [0, 0, 0.0])
        a[0] += 1
        a[1] += 0 if ok else 1
        a[2] += float(conf)
    return {k: (int(v[0]), int(v[1]), float(v[2])) for k, v in out.items()}


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def psi(reference: Mapping[str, float], current: Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """PSI = sum (cur - ref) * ln(cur / ref) over the union of categories, shares floored at ``PSI_EPS``.

    Returns the index and each category's contribution (all contributions are >= 0)."""
    ref, cur = shares(reference), shares(current)
    contrib = {}
    for k in sorted(set(ref) | set(cur)):
        r, c = max(ref.get(k, 0.0), PSI_EPS), max(cur.get(k, 0.0), PSI_EPS)
        contrib[k] = (c - r) * math.log(c / r)
    return sum(contrib.values()), contrib


def psi_level(value: float) -> str:
    return next(name for bound, name in PSI_LEVELS if value < bound)


def training_mix(manifest: Mapping[str, Any]) -> dict[str, float] | None:
    ref = manifest.get("reference", {}).get("label_share")
    if ref:
        return dict(ref)
    by_label = manifest.get("data", {}).get("counts", {}).get("by_label")
    return shares(by_label) if by_label else None


def report(current: Counts, manifest: Mapping[str, Any], previous: Counts | None = None,
           top: int = 5, min_n: int = 20) -> dict[str, Any]:
    """The drift report for ``current`` traffic aggregates (see module docstring)."""
    n = sum(v[0] for v in current.values())
    out: dict[str, Any] = {"model_version": manifest.get("version"), "n": n}
    ref = manifest.get("reference", {})
    unconf = sum(v[1] for v in current.values()) / n if n else None
    out["unconfident_share"] = None if unconf is None else round(unconf, 4)
    out["reference_unconfident_share"] = ref.get("validation_unconfident_share")
    mix = {k: v[0] for k, v in current.items()}

    def mix_block(reference: Mapping[str, float]) -> dict[str, Any]:
        value, contrib = psi(reference, mix)
        rs, cs = shares(reference), shares(mix)
        rows = [{"label": k, "reference_share": round(rs.get(k, 0.0), 4), "recent_share": round(cs.get(k, 0.0), 4),
                 "contribution": round(c, 4)} for k, c in sorted(contrib.items(), key=lambda kv: -kv[1])]
        return {"psi": round(value, 4), "level": psi_level(value), "top_contributors": rows[:top]}

    train_mix = training_mix(manifest)
    out["vs_training"] = mix_block(train_mix) if (train_mix and n) else None
    prev_n = sum(v[0] for v in previous.values()) if previous else 0
    out["vs_previous"] = mix_block({k: v[0] for k, v in previous.items()}) if (prev_n and n) else None
    if out["vs_previous"] is not None and previous is not None:
        out["vs_previous"]["n"] = prev_n
        out["vs_previous"]["unconfident_share"] = round(sum(v[1] for v in previous.values()) / prev_n, 4)

    base_conf = dict(ref.get("validation_mean_confidence") or {})
    base_name = "validation"
    if not base_conf and previous:
        base_conf = {k: v[2] / v[0] for k, v in previous.items() if v[0] >= min_n}
        base_name = "previous window"
    drops = []
    for k, (cnt, _, s) in current.items():
        if cnt >= min_n and k in base_conf:
            mean = s / cnt
            drops.append({"label": k, "reference_mean": round(base_conf[k], 4), "recent_mean": round(mean, 4),
                          "drop": round(base_conf[k] - mean, 4), "n": cnt})
    drops.sort(key=lambda d: -d["drop"])
    out["confidence_baseline"] = base_name if base_conf else None
    out["confidence_drops"] = [d for d in drops if d["drop"] > 0][:top]
    out["advice"] = advice(out)
    return out


def advice(r: Mapping[str, Any]) -> list[str]:
    tips = []
    u, ru = r.get("unconfident_share"), r.get("reference_unconfident_share")
    if u is not None and ru is not None and u > ru + 0.05:
        tips.append(f"{u:.0%} of recent predictions are unconfident vs {ru:.0%} on validation: label a sample of "
                    "the unconfident traffic (POST /v1/feedback) and retrain (`prompt-tagger train --add ...`)")
    for key, what in (("vs_previous", "the previous window"), ("vs_training", "the training data")):
        b = r.get(key)
        if b and b["level"] != "stable":
            movers = ", ".join(f"{c['label']} {c['reference_share']:.0%}->{c['recent_share']:.0%}"
                               for c in b["top_contributors"][:3])
            tips.append(f"category mix vs {what}: PSI {b['psi']:.2f} ({b['level']}); biggest movers {movers}")
    for d in r.get("confidence_drops", [])[:3]:
        if d["drop"] >= 0.05:
            tips.append(f"{d['label']}: mean confidence {d['reference_mean']:.2f} -> {d['recent_mean']:.2f} "
                        f"on {d['n']} requests: new phrasing for this label? add labelled examples of it")
    if not tips and r.get("n"):
        tips.append("no drift signal above the thresholds")
    return tips


def format_report(r: Mapping[str, Any]) -> str:
    lines = [f"drift for model {r['model_version']} over {r['n']} predictions"]
    if r["unconfident_share"] is not None:
        ref = r["reference_unconfident_share"]
        lines.append(f"unconfident share {r['unconfident_share']:.1%}"
                     + (f" (validation {ref:.1%})" if ref is not None else ""))
    for key, what in (("vs_training", "training label mix"), ("vs_previous", "previous window")):
        b = r.get(key)
        if b:
            lines.append(f"PSI vs {what}: {b['psi']:.3f} ({b['level']})")
            for c in b["top_contributors"]:
                lines.append(f"  {c['label']:14s} {c['reference_share']:6.1%} -> {c['recent_share']:6.1%}  "
                             f"({c['contribution']:+.3f})")
    if r["confidence_drops"]:
        lines.append(f"mean confidence fell most (baseline: {r['confidence_baseline']}):")
        for d in r["confidence_drops"]:
            lines.append(f"  {d['label']:14s} {d['reference_mean']:.3f} -> {d['recent_mean']:.3f}  "
                         f"(-{d['drop']:.3f}, n={d['n']})")
    lines += [f"advice: {t}" for t in r["advice"]]
    return "\n".join(lines)
