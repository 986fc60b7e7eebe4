"""New labelled rows for a retrain: reading (JSONL / CSV / the service's feedback table) and validation.

Validation reports every problem and decides nothing quietly: rows with an error (empty text, unknown label,
the same text with two labels, a text that the training data labels differently) stop the retrain unless the
caller passes ``skip_invalid`` (those rows are then left out, and the report goes into the manifest) or, for
disagreements with the training data, ``relabel`` (the new label replaces the old one). Exact repeats are kept
once and reported.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from classifier.text import InputError, to_text

ERRORS = ("bad_row", "empty_text", "unknown_label", "conflicting_labels", "conflicts_with_training",
          "too_few_examples", "bad_new_label")
WARNINGS = ("duplicate", "duplicate_of_training", "relabelled", "feedback_without_text")
FATAL = ("too_few_examples", "bad_new_label")  # --skip-invalid cannot skip these
LABEL_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


@dataclass
class Row:
    text: str
    label: str
    where: str  # "path:line" or "feedback:<id>"


@dataclass
class Issue:
    kind: str
    where: str
    detail: str
    text: str = ""

    @property
    def error(self) -> bool:
        return self.kind in ERRORS


@dataclass
class Validation:
    rows: list[Row]  # usable rows, after the caller's choices
    issues: list[Issue] = field(default_factory=list)
    relabel: dict[str, str] = field(default_factory=dict)  # norm key -> new label, replacing training rows

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.error]

    def counts(self) -> dict[str, int]:
        return dict(Counter(i.kind for i in self.issues))

    def summary(self) -> dict[str, Any]:
        return {"usable_rows": len(self.rows), "issues": self.counts(),
                "by_label": dict(Counter(r.label for r in self.rows))}

    def format(self, limit: int = 20) -> str:
        lines = [f"new data: {len(self.rows)} usable rows " + json.dumps(dict(Counter(r.label for r in self.rows)))]
        if not self.issues:
            lines.append("validation: no problems found")
            return "\n".join(lines)
        lines.append("validation: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items())))
        for kind in ERRORS + WARNINGS:
            items = [i for i in self.issues if i.kind == kind]
            for i in items[:limit]:
                txt = f"  {i.text[:60]!r}" if i.text else ""
                lines.append(f"  {'ERROR' if i.error else 'note '} {kind}: {i.where}: {i.detail}{txt}")
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more {kind}")
        return "\n".join(lines)


def norm_key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _item_text(obj: Mapping[str, Any]) -> str:
    item = obj.get("request") if obj.get("request") is not None else obj.get("text")
    if item is None:
        raise InputError("no `text` or `request` field")
    return to_text(item)


def read_labelled(path: Path) -> tuple[list[Row], list[Issue]]:
    """JSONL (optionally .gz) or CSV rows with ``text`` or ``request`` (a chat request) and ``label``."""
    path = Path(path)
    rows, issues = [], []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            records: Iterable[tuple[int, Any]] = list(enumerate(csv.DictReader(fh), 2))
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            records = []
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    issues.append(Issue("bad_row", f"{path}:{n}", f"not JSON: {exc.msg}"))
    for n, obj in records:
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            issues.append(Issue("bad_row", where, "expected an object with `text` (or `request`) and `label`"))
            continue
        try:
            text = _item_text(obj)
        except InputError as exc:
            issues.append(Issue("bad_row", where, str(exc)))
            continue
        rows.append(Row(text, str(obj.get("label") or "").strip(), where))
    return rows, issues


def read_feedback(db_path: Path, after_id: int = 0) -> tuple[list[Row], list[Issue], int]:
    """Feedback rows with id > ``after_id`` from the service's SQLite store; returns rows, issues, max id."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        got = con.execute("SELECT id, text, label FROM feedback WHERE id > ? ORDER BY id", (after_id,)).fetchall()
    finally:
        con.close()
    rows, issues = [], []
    for fid, text, label in got:
        where = f"feedback:{fid}"
        if text is None:
            issues.append(Issue("feedback_without_text", where, "no text stored (the request was classified with "
                                "PROMPT_TAGGER_STORE_TEXT off and the feedback gave only a request_id); not used"))
            continue
        rows.append(Row(text, label, where))
    return rows, issues, max([after_id] + [r[0] for r in got])


def validate(rows: list[Row], labels: list[str], new_labels: Iterable[str] = (),
             training: Mapping[str, str] | None = None, *, min_new_label: int = 20, relabel: bool = False,
             issues: list[Issue] | None = None) -> Validation:
    """Check new rows against the label list (plus ``new_labels``) and the training data (norm key -> label)."""
    issues = list(issues or [])
    training = training or {}
    new_labels = list(dict.fromkeys(new_labels))
    for lab in new_labels:
        if lab in labels:
            issues.append(Issue("bad_new_label", "--new-label", f"{lab!r} is already a label of the parent model"))
        elif not LABEL_RE.match(lab):
            issues.append(Issue("bad_new_label", "--new-label", f"{lab!r}: expected lowercase letters, digits "
                                "and _ (2-32 characters, starting with a letter)"))
    valid = list(labels) + [lab for lab in new_labels if lab not in labels]
    bad_rows: set[int] = set()
    for i, r in enumerate(rows):
        if not r.text.strip():
            issues.append(Issue("empty_text", r.where, "the text is empty"))
            bad_rows.add(i)
        elif r.label not in valid:
            hint = "" if r.label == "" else f"; declare a new category with --new-label {r.label}"
            issues.append(Issue("unknown_label", r.where, f"label {r.label!r} is not one of {valid}{hint}", r.text))
            bad_rows.add(i)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if i not in bad_rows:
            groups[norm_key(r.text)].append(i)
    keep: list[Row] = []
    relabels: dict[str, str] = {}
    for key, idx in groups.items():
        labs = {rows[i].label for i in idx}
        if len(labs) > 1:
            detail = "the same text is labelled " + ", ".join(f"{rows[i].label} ({rows[i].where})" for i in idx)
            issues += [Issue("conflicting_labels", rows[i].where, detail, rows[i].text) for i in idx]
            continue
        first = rows[idx[0]]
        issues += [Issue("duplicate", rows[i].where, f"repeats {first.where}; kept once", rows[i].text)
                   for i in idx[1:]]
        old = training.get(key)
        if old is None:
            keep.append(first)
        elif old == first.label:
            issues.append(Issue("duplicate_of_training", first.where, f"already in the training data as "
                                f"{old}; not added again", first.text))
        elif relabel:
            issues.append(Issue("relabelled", first.where, f"training data says {old}; --relabel: now "
                                f"{first.label}", first.text))
            relabels[key] = first.label
            keep.append(first)
        else:
            issues.append(Issue("conflicts_with_training", first.where, f"the training data labels this text "
                                f"{old}, the new row {first.label}; pass --relabel to let the new label win",
                                first.text))
    counts = Counter(r.label for r in keep)
    for lab in new_labels:
        if lab not in labels and counts[lab] < min_new_label:
            issues.append(Issue("too_few_examples", "--new-label", f"new label {lab!r} has {counts[lab]} usable "
                                f"examples; at least {min_new_label} are needed"))
    return Validation(keep, issues, relabels)


def as_dicts(rows: Iterable[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
