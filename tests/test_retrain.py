"""Retraining: new-data validation, lineage, the registry, the promotion gate, drift (fake encoder throughout)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from classifier import drift
from classifier.labels import LABELS
from training import newdata
from training.gate import GateConfig, check, gate_candidate
from training.registry import Registry, RegistryError
from training.retrain import RetrainError, read_added, retrain

from .retrain_helpers import GOLD_TEXTS, FakeTrain, base_examples, gold_from, write_fake_version


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


# -- validation ------------------------------------------------------------------------------------------------
def test_validation_reports_every_problem_and_uses_nothing_bad(tmp_path):
    p = jsonl(tmp_path / "new.jsonl", [
        {"text": "fix my python loop", "label": "programming"},
        {"text": "  ", "label": "legal"},
        {"text": "book me a flight", "label": "agentic"},
        {"text": "Fix my  python loop", "label": "programming"},  # repeat after case/space normalisation
        {"text": "is this contract valid", "label": "legal"},
        {"text": "is this contract valid", "label": "finance"},
        {"text": "base legal example 0", "label": "finance"},  # the training data says legal
        {"text": "base legal example 1", "label": "legal"},  # already there, same label
        {"request": {"messages": [{"role": "user", "content": "translate hi to French"}]}, "label": "translation"},
        "not an object",
        "{broken",
    ])
    rows, issues = newdata.read_labelled(p)
    training = {newdata.norm_key(e.text): e.label for e in base_examples(list(LABELS))}
    v = newdata.validate(rows, list(LABELS), [], training, issues=issues)
    c = v.counts()
    assert c == {"bad_row": 2, "empty_text": 1, "unknown_label": 1, "duplicate": 1, "conflicting_labels": 2,
                 "conflicts_with_training": 1, "duplicate_of_training": 1}
    assert sorted(r.text for r in v.rows) == ["fix my python loop", "translate hi to French"]
    report = v.format()
    assert "--new-label agentic" in report and "labels this text legal, the new row finance" in report
    assert f"{p}:3" in report  # where: file and line


def test_new_label_needs_enough_examples(tmp_path):
    rows = [newdata.Row(f"call the weather tool for city {i}", "agentic", f"x:{i}") for i in range(5)]
    v = newdata.validate(rows, list(LABELS), ["agentic"], {}, min_new_label=20)
    assert [i.kind for i in v.errors] == ["too_few_examples"]
    v = newdata.validate(rows, list(LABELS), ["agentic"], {}, min_new_label=5)
    assert not v.errors and len(v.rows) == 5
    v = newdata.validate(rows, list(LABELS), ["Agentic!", "legal"], {})
    assert [i.kind for i in v.errors][:2] == ["bad_new_label", "bad_new_label"]


def test_csv_and_feedback_rows(tmp_path):
    csv = tmp_path / "new.csv"
    csv.write_text("text,label\nwrite a haiku,writing\n,legal\n")
    rows, issues = newdata.read_labelled(csv)
    assert [(r.text, r.label) for r in rows] == [("write a haiku", "writing"), ("", "legal")]
    db = tmp_path / "fb.sqlite3"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, ts REAL, request_id TEXT, text TEXT, label TEXT, "
                "predicted TEXT, model_version TEXT, comment TEXT)")
    con.executemany("INSERT INTO feedback (ts, text, label) VALUES (0, ?, ?)",
                    [("what is a tort", "legal"), (None, "finance"), ("stock tips", "finance")])
    con.commit()
    con.close()
    rows, issues, max_id = newdata.read_feedback(db)
    assert [r.where for r in rows] == ["feedback:1", "feedback:3"] and max_id == 3
    assert [i.kind for i in issues] == ["feedback_without_text"]
    assert newdata.read_feedback(db, after_id=3)[0] == []


# -- retrain: data and lineage -----------------------------------------------------------------------------------
@pytest.fixture
def reg(tmp_path) -> Registry:
    root = tmp_path / "models"
    write_fake_version(root / "default", list(LABELS), seed=1, version="shipped-1",
                       extra={"training_config": {"max_tokens": 256}, "head": {"C": 4.0}})
    return Registry(root)


def test_retrain_refuses_bad_data_unless_told(reg, tmp_path):
    new = jsonl(tmp_path / "new.jsonl", [{"text": "fix my loop", "label": "programming"},
                                        {"text": "book a table", "label": "agentic"}])
    fake = FakeTrain()
    with pytest.raises(RetrainError, match="--skip-invalid"):
        retrain(tmp_path / "out", reg.served, add=[new], base=base_examples(list(LABELS)), train_fn=fake,
                log=lambda s: None)
    assert fake.calls == []  # nothing trained on data that failed validation
    res = retrain(reg.root / "v2", reg.served, add=[new], base=base_examples(list(LABELS)), train_fn=fake,
                  skip_invalid=True, log=lambda s: None)
    texts = {e.text for e in fake.calls[0]["examples"]}
    assert "fix my loop" in texts and "book a table" not in texts
    assert res.manifest["lineage"]["validation"]["issues"] == {"unknown_label": 1}
    assert fake.calls[0]["cfg"].c_grid == (4.0,)  # the parent's C, no search


def test_lineage_chain_new_label_and_relabel(reg, tmp_path):
    base = base_examples(list(LABELS))
    fake = FakeTrain()
    agentic = [{"text": f"use the calendar tool to book meeting {i}", "label": "agentic"} for i in range(25)]
    new = jsonl(tmp_path / "a.jsonl", agentic + [{"text": "base legal example 0", "label": "finance"}])
    with pytest.raises(RetrainError, match="--relabel"):
        retrain(reg.root / "v2", reg.served, add=[new], new_labels=["agentic"], base=base, train_fn=fake,
                log=lambda s: None)
    res = retrain(reg.root / "v2", reg.served, add=[new], new_labels=["agentic"], relabel=True, base=base,
                  train_fn=fake, log=lambda s: None)
    call = fake.calls[-1]
    assert call["labels"] == list(LABELS) + ["agentic"] and call["parent"] == "shipped-1"
    ex = {e.text: e.label for e in call["examples"]}
    assert ex["base legal example 0"] == "finance" and len(call["examples"]) == len(base) + 25
    man = json.loads((res.out / "manifest.json").read_text())
    assert man["labels"][-1] == "agentic" and "agentic" in man["thresholds"]
    lin = man["lineage"]
    assert lin["parent"]["version"] == "shipped-1" and lin["new_labels"] == ["agentic"]
    assert lin["added"]["rows"] == 26 and lin["added"]["new"] == 26 and lin["added"]["from_ancestors"] == 0
    # a grandchild keeps what v2 added and adds its own rows
    more = jsonl(tmp_path / "b.jsonl", [{"text": "summarise this court ruling", "label": "legal"}])
    res3 = retrain(reg.root / "v3", reg.root / "v2", add=[more], base=base, train_fn=fake, log=lambda s: None)
    assert len(read_added(res3.out)) == 27
    assert res3.manifest["lineage"]["added"]["from_ancestors"] == 26
    assert fake.calls[-1]["labels"][-1] == "agentic"
    # the parent's added rows are checked against its manifest
    (reg.root / "v2" / "added.jsonl").write_text("")
    with pytest.raises(RetrainError, match="does not match"):
        retrain(reg.root / "v4", reg.root / "v2", add=[more], base=base, train_fn=fake, log=lambda s: None)


def test_retrain_records_gold_metrics_and_deltas(reg, tmp_path):
    gold = gold_from(reg.served, tmp_path / "gold.jsonl", GOLD_TEXTS)
    new = jsonl(tmp_path / "n.jsonl", [{"text": "fix my loop", "label": "programming"}])
    res = retrain(reg.root / "v2", reg.served, add=[new], base=base_examples(list(LABELS)), train_fn=FakeTrain(),
                  gold=gold, gate_engine="graph", log=lambda s: None)
    m = res.manifest["metrics"]
    assert m["gold"]["gold"] == "gold.jsonl" and 0 <= m["gold"]["strict_macro_f1"] <= 1
    # the parent scores 1.0 on a gold set made of its own predictions
    assert m["gold_deltas_vs_parent"]["strict_macro_f1_pt"] == pytest.approx(
        100 * (m["gold"]["strict_macro_f1"] - 1.0), abs=0.01)


# -- gate -------------------------------------------------------------------------------------------------------
def scores(macro: float, per: dict[str, float]) -> dict:
    return {"gold": "gold_v1.jsonl", "n": 100, "n_sure": 90, "engine": "head", "strict_macro_f1": macro,
            "lenient_accuracy": 0.8, "per_label": {k: {"f1": v, "support": 10} for k, v in per.items()}}


def test_gate_names_the_regressed_label():
    cur = scores(0.70, {"legal": 0.70, "finance": 0.70})
    ok = check(scores(0.699, {"legal": 0.68, "finance": 0.72}), cur, GateConfig(), "v2", "v1")
    assert ok.passed and ok.format().endswith("gate: PASSED")
    bad = check(scores(0.69, {"legal": 0.65, "finance": 0.73}), cur, GateConfig(), "v2", "v1")
    assert not bad.passed
    text = bad.format()
    assert "REGRESSION strict macro-F1: 0.7000 -> 0.6900 (-1.00 pt, limit -0.50 pt)" in text
    assert "REGRESSION label legal F1: 0.7000 -> 0.6500 (-5.00 pt, limit -3.00 pt)" in text
    assert "finance" not in text.split("REGRESSION", 1)[1]
    loose = check(scores(0.69, {"legal": 0.65, "finance": 0.73}), cur, GateConfig(2.0, 6.0), "v2", "v1")
    assert loose.passed
    with pytest.raises(ValueError, match=">= 0"):
        GateConfig(-1, 3)


# -- registry: promote, reject, rollback ------------------------------------------------------------------------
def run_cli(*argv: str) -> int:
    from classifier.cli import main

    return main(list(argv))


def test_promote_reject_and_rollback(reg, tmp_path, capsys):
    write_fake_version(reg.root / "v2", list(LABELS), seed=2)
    write_fake_version(reg.root / "v3", list(LABELS), seed=3)
    texts = GOLD_TEXTS
    served_gold = gold_from(reg.served, tmp_path / "served_gold.jsonl", texts)
    v2_gold = gold_from(reg.root / "v2", tmp_path / "v2_gold.jsonl", texts)
    root = str(reg.root)
    before = (reg.served / "head.npz").read_bytes()
    # a gold set on which the served model is perfect: v2 regresses and is refused
    rc = run_cli("models", "--models-dir", root, "promote", "v2", "--gold", str(served_gold), "--engine", "graph")
    out = capsys.readouterr().out
    assert rc == 1 and "REGRESSION" in out and "stays in place" in out
    assert (reg.served / "head.npz").read_bytes() == before and reg.served_version() == "shipped-1"
    # a gold set on which v2 is perfect: accepted, swapped in, the old model archived for rollback
    rc = run_cli("models", "--models-dir", root, "promote", "v2", "--gold", str(v2_gold), "--engine", "graph")
    out = capsys.readouterr().out
    assert rc == 0 and "gate: PASSED" in out and reg.served_version() == "v2-s2"
    assert (reg.served / "head.npz").read_bytes() == (reg.root / "v2" / "head.npz").read_bytes()
    assert "shipped-1" in reg.versions() and reg.current_name() == "v2"
    from classifier import Classifier

    assert Classifier.load(reg.served).version == "v2-s2"  # hashes verify: a whole, consistent folder
    reg.promote("v3", gate=None, forced=True)
    assert run_cli("models", "--models-dir", root, "rollback") == 0
    assert reg.served_version() == "v2-s2"
    assert run_cli("models", "--models-dir", root, "rollback") == 0
    assert reg.served_version() == "shipped-1"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback_target()
    capsys.readouterr()
    assert run_cli("models", "--models-dir", root, "list") == 0
    listing = capsys.readouterr().out
    assert "* shipped-1" in listing.replace("*" + " ", "* ") and "v3" in listing
    actions = [h["action"] for h in reg.load()["history"]]
    assert actions == ["rejected", "archive", "promote", "promote", "rollback", "rollback"]
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".default")]


def test_gate_candidate_uses_score_cache(reg, tmp_path):
    write_fake_version(reg.root / "v2", list(LABELS), seed=2)
    gold = gold_from(reg.root / "v2", tmp_path / "g.jsonl", GOLD_TEXTS)
    g = gate_candidate(reg, "v2", gold, GateConfig(), engine="graph")
    assert g.passed and len(reg.load()["gold_scores"]) == 2


# -- drift ------------------------------------------------------------------------------------------------------
def test_psi_and_report():
    assert drift.psi({"a": 50, "b": 50}, {"a": 50, "b": 50})[0] == pytest.approx(0.0)
    value, contrib = drift.psi({"a": 0.5, "b": 0.5}, {"a": 0.9, "b": 0.1})
    assert value == pytest.approx(0.4 * __import__("math").log(0.9 / 0.5) + 0.4 * __import__("math").log(5), 1e-6)
    assert drift.psi_level(value) == "significant shift"
    manifest = {"version": "m1", "reference": {"label_share": {"legal": 0.5, "finance": 0.5},
                                               "validation_unconfident_share": 0.1,
                                               "validation_mean_confidence": {"legal": 0.9, "finance": 0.8}}}
    recs = [("legal", 0.5, False)] * 60 + [("finance", 0.79, True)] * 40
    r = drift.report(drift.aggregate(recs), manifest)
    assert r["unconfident_share"] == 0.6 and r["vs_training"]["level"] == "stable"
    assert r["confidence_drops"][0]["label"] == "legal" and r["confidence_drops"][0]["drop"] == pytest.approx(0.4)
    text = drift.format_report(r)
    assert "unconfident share 60.0% (validation 10.0%)" in text and "label a sample" in text
    # without a reference in the manifest: the training counts and the previous window stand in
    old = {"version": "m0", "data": {"counts": {"by_label": {"legal": 10, "finance": 90}}}}
    prev = drift.aggregate([("legal", 0.9, True)] * 50 + [("finance", 0.9, True)] * 50)
    r = drift.report(drift.aggregate(recs), old, prev)
    assert r["vs_training"]["psi"] > 0.25 and r["vs_previous"] is not None
    assert r["confidence_baseline"] == "previous window"


def test_drift_cli_on_tagged_jsonl(fake_model_dir, tmp_path, capsys):
    tagged = jsonl(tmp_path / "tagged.jsonl", [{"category": "legal", "confidence": 0.2, "confident": False}] * 30
                   + [{"category": "finance", "confidence": 0.9, "confident": True}] * 10)
    assert run_cli("drift", str(tagged), "--model", str(fake_model_dir), "--json") == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 40 and r["unconfident_share"] == 0.75 and r["vs_training"] is None  # no training data info
    bad = jsonl(tmp_path / "bad.jsonl", [{"text": "x"}])
    with pytest.raises(ValueError, match="expected tagged rows"):
        run_cli("drift", str(bad), "--model", str(fake_model_dir))


def test_training_cli_imports_nothing_heavy():
    import subprocess

    heavy = "('torch', 'sklearn', 'sentence_transformers', 'onnxruntime')"
    code = f"import sys, training.cli, classifier.drift; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
