from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classifier.cli import main

pa = pytest.importorskip("pyarrow", reason="the [batch] extra is not installed")
pq = pytest.importorskip("pyarrow.parquet")
REPO = Path(__file__).resolve().parents[1]
WORDS = ["hello world", "translate the code", "python query", "你好翻译英文", "the world", "a code", "hello"]


def make_rows(n: int, weeks: int = 3, start: int = 1_785_000_000) -> list[dict]:
    rows = []
    for i in range(n):
        r = {"request_id": f"r{i:05d}", "timestamp": start + (i * 7 * 86400 * weeks) // n,
             "model": ["m-a", "m-b", "m-c"][i % 3], "prompt_tokens": 10 + i % 7, "completion_tokens": 100 + i}
        if i % 4 == 0:
            r["request"] = {"messages": [{"role": "user", "content": WORDS[i % len(WORDS)] + f" {i}"}]}
        else:
            r["text"] = WORDS[i % len(WORDS)] + f" {i}"
        rows.append(r)
    return rows


def write_jsonl(path: Path, rows: list, extra_lines: list[bytes] = ()) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as fh:
        for r in rows:
            fh.write(json.dumps(r).encode() + b"\n")
        for b in extra_lines:
            fh.write(b + b"\n")
    return path


def read_out(d: Path) -> list[dict]:
    rows = []
    for p in sorted(d.glob("day=*/*.parquet")):
        rows += pq.read_table(p).to_pylist()
    return sorted(rows, key=lambda r: (r["source_file"], r["source_row"]))


def test_tag_writes_parquet_by_day_and_lists_bad_rows(fake_model_dir, tmp_path, capsys):
    rows = make_rows(40)
    bad = [b"{not json", json.dumps({"text": 5}).encode(), json.dumps({"foo": 1}).encode(),
           json.dumps({"text": "hi", "prompt_tokens": "many"}).encode(),
           json.dumps({"text": "hi", "timestamp": "yesterday"}).encode(), b""]
    src = write_jsonl(tmp_path / "log.jsonl", rows, bad)
    out = tmp_path / "out"
    assert main(["tag", str(src), "-o", str(out), "--model", str(fake_model_dir), "--chunk-rows", "16",
                 "--no-progress"]) == 0
    got = read_out(out)
    assert [r["request_id"] for r in got] == [r["request_id"] for r in rows]
    days = sorted(p.name for p in out.glob("day=*"))
    assert len(days) > 10 and all(len(d) == len("day=2026-07-25") for d in days)
    assert "text" not in got[0] and "scores" not in str(got[0].keys())
    first = got[0]
    assert first["model"] == "m-a" and first["prompt_tokens"] == 10 and first["completion_tokens"] == 100
    assert first["timestamp"].year == 2026 and first["model_version"] == "fake-test"
    assert 0 <= first["confidence"] <= 1 and isinstance(first["confident"], bool) and first["language"]
    errs = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["reason"].split(":")[0]) for e in errs] == [
        (41, "not JSON"), (42, "text"), (43, "expected a 'text' field (string), a 'request' field (OpenAI chat "
                                             "body) or 'messages'; got keys ['foo']; map other names with --text-field "
                                             "/ --request-field"), (44, "prompt_tokens"), (45, "timestamp")]
    assert all(e["file"] == str(src) for e in errs)
    err = capsys.readouterr().err
    assert "read 45 rows; tagged 40 rows, skipped 5 bad rows" in err
    assert f"{src}:44: skipped: prompt_tokens: expected a non-negative integer" in err


def test_csv_parquet_gz_and_field_mapping_tag_the_same_rows(fake_model_dir, fake_clf, tmp_path):
    rows = make_rows(30)
    texts = [r["text"] if "text" in r else r["request"]["messages"][0]["content"] for r in rows]
    d = tmp_path / "logs"
    d.mkdir()
    import csv

    with open(d / "a.csv", "w", newline="") as fh:  # mapped names, request body as a JSON string column
        w = csv.writer(fh)
        w.writerow(["rid", "ts", "llm", "body", "usage_in"])
        for r, t in zip(rows[:10], texts[:10], strict=True):
            w.writerow([r["request_id"], "2026-08-01T10:00:00Z", r["model"],
                        json.dumps({"messages": [{"role": "user", "content": t}]}), r["prompt_tokens"]])
    pq.write_table(pa.table({"rid": [r["request_id"] for r in rows[10:20]],
                             "ts": [r["timestamp"] * 1000 for r in rows[10:20]],  # epoch milliseconds
                             "llm": [r["model"] for r in rows[10:20]],
                             "prompt": texts[10:20]}), d / "b.parquet", row_group_size=3)
    write_jsonl(d / "c.jsonl.gz", [{"rid": r["request_id"], "prompt": t, "ts": r["timestamp"], "llm": "x",
                                    "usage": {"in": 3}} for r, t in zip(rows[20:], texts[20:], strict=True)])
    cfg = tmp_path / "fields.json"
    cfg.write_text(json.dumps({"request_id": "rid", "timestamp": "ts", "model": "llm"}))
    out = tmp_path / "out"
    assert main(["tag", str(d / "a.csv"), str(d / "*.parquet"), str(d / "c.jsonl.gz"), "-o", str(out),
                 "--fields", str(cfg), "--text-field", "prompt", "--request-field", "body",
                 "--prompt-tokens-field", "usage_in", "--model", str(fake_model_dir), "--chunk-rows", "4",
                 "--workers", "2", "--no-progress"]) == 0
    got = {r["request_id"]: r for r in read_out(out)}
    assert sorted(got) == [r["request_id"] for r in rows]
    want = fake_clf.predict(texts)
    assert [got[r["request_id"]]["category"] for r in rows] == [t.category for t in want]
    assert got["r00000"]["prompt_tokens"] == 10 and got["r00000"]["timestamp"].hour == 10
    assert got["r00010"]["timestamp"].timestamp() == rows[10]["timestamp"]
    assert got["r00020"]["model"] == "x" and got["r00020"]["source_row"] == 1
    assert (out / "errors.jsonl").read_text() == ""
    # a directory input finds all three files; a second job over the same output resumes: nothing to redo
    assert main(["tag", str(d), "-o", str(out), "--fields", str(cfg), "--text-field", "prompt", "--request-field",
                 "body", "--prompt-tokens-field", "usage_in", "--model", str(fake_model_dir), "--chunk-rows", "4",
                 "--no-progress"]) == 0
    assert len(read_out(out)) == 30


def test_keep_text_scores_and_jsonl_output(fake_model_dir, tmp_path):
    src = write_jsonl(tmp_path / "log.jsonl", make_rows(5))
    out = tmp_path / "out"
    assert main(["tag", str(src), "-o", str(out), "--model", str(fake_model_dir), "--keep-text", "--scores"]) == 0
    r = read_out(out)[0]
    assert r["text"] == "hello world 0" and abs(sum(v for k, v in r.items() if k.startswith("score_")) - 1) < 1e-3
    assert main(["tag", str(src), "-o", str(out), "--model", str(fake_model_dir)]) == 2  # settings changed
    j = tmp_path / "o.jsonl"
    assert main(["tag", str(src), "-o", str(j), "--model", str(fake_model_dir)]) == 0
    lines = [json.loads(x) for x in j.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4, 5] and lines[0]["request_id"] == "r00000"
    assert not (tmp_path / "o.jsonl.parts").exists()


def test_resume_after_kill_9_gives_every_row_once(fake_model_dir, tmp_path):
    n = 6000
    src = write_jsonl(tmp_path / "log.jsonl", make_rows(n))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "classifier.cli", "tag", str(src), "-o", str(out), "--model", str(fake_model_dir),
           "--chunk-rows", "25", "--workers", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, stderr=subprocess.PIPE)
    state = out / "_state"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(state.glob("*.done"))) < 5:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-write
    proc.wait()
    done_before = len(list(state.glob("*.done")))
    assert 5 <= done_before < n // 25, "the job must be interrupted part-way for this test to mean anything"
    assert not (out / "errors.jsonl").exists()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"read {n} rows; tagged {n} rows, skipped 0 bad rows" in r.stderr
    assert "chunks were finished by an earlier run" in r.stderr
    ids = [x["request_id"] for x in read_out(out)]
    assert len(ids) == n and len(set(ids)) == n
    leftovers = [p.name for p in out.glob("day=*/*") if not p.name.endswith(".parquet")]
    assert all(name.startswith(".") for name in leftovers)  # a killed write's temp file is hidden from readers


def test_report_tables_charts_and_html(fake_model_dir, tmp_path):
    rows = make_rows(300, weeks=4)
    src = write_jsonl(tmp_path / "log.jsonl", rows)
    tagged = tmp_path / "tagged"
    assert main(["tag", str(src), "-o", str(tagged), "--model", str(fake_model_dir), "--no-progress"]) == 0
    rep = tmp_path / "rep"
    assert main(["report", str(tagged), "-o", str(rep), "--by", "model"]) == 0
    import csv

    def table(name):
        with open(rep / f"{name}.csv") as fh:
            return list(csv.DictReader(fh))

    weekly = table("category_share_weekly")
    weeks = {r["week"] for r in weekly}
    assert 4 <= len(weeks) <= 6
    for w in weeks:
        assert abs(sum(float(r["share_requests"]) for r in weekly if r["week"] == w) - 1) < 1e-4
        assert abs(sum(float(r["share_tokens"]) for r in weekly if r["week"] == w) - 1) < 1e-4
    assert sum(int(r["requests"]) for r in weekly) == 300
    assert sum(int(r["tokens"]) for r in weekly) == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    mc = table("model_category")
    assert {r["model"] for r in mc} == {"m-a", "m-b", "m-c"} and sum(int(r["requests"]) for r in mc) == 300
    assert table("summary")[0]["requests"] == "300"
    conf = table("confidence_by_category")
    assert sum(int(r["confident"]) + int(r["unclassified"]) for r in conf) == 300
    assert {r["category"] for r in table("prompt_length_by_category")} == {r["category"] for r in conf}
    assert int(table("top_languages_by_category")[0]["rank"]) == 1
    assert {r["model"] for r in table("category_share_weekly_by_model")} == {"m-a", "m-b", "m-c"}
    for png in ("category_share_weekly_requests", "category_share_weekly_tokens", "language_share",
                "model_category", "prompt_length_by_category", "confidence_by_category",
                "category_share_weekly_by_model"):
        data = (rep / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    page = (rep / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 7 and "http" not in page.replace("charset", "")
    assert "300 requests" in page
    # a window keeps only its days
    first_day = min(p.name for p in tagged.glob("day=*"))[4:]
    rep2 = tmp_path / "rep2"
    assert main(["report", str(tagged), "-o", str(rep2), "--since", first_day, "--until", first_day]) == 0
    with open(rep2 / "summary.csv") as fh:
        n = int(next(csv.DictReader(fh))["requests"])
    assert 0 < n < 300
    assert main(["report", str(tagged), "-o", str(rep2), "--since", "2001-01-01", "--until", "2001-01-02"]) == 2


def test_batch_imports_stay_light():
    code = ("import sys, classifier, classifier.cli, classifier.batch.cli, classifier.batch.engine, "
            "classifier.batch.ray_engine, classifier.batch.report; "
            "print(sorted(m for m in ('pyarrow','duckdb','matplotlib','tqdm','ray','torch','pandas') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


@pytest.mark.slow
def test_real_model_batch_matches_in_process_predict(real_clf, tmp_path):
    rows = [{"request_id": "1", "text": "Translate to German: good morning", "timestamp": "2026-08-01T00:00:00Z"},
            {"request_id": "2", "text": "My Flask app throws TypeError: datetime is not JSON serializable",
             "timestamp": "2026-08-01T00:00:00Z"}]
    src = write_jsonl(tmp_path / "log.jsonl", rows)
    out = tmp_path / "out"
    assert main(["tag", str(src), "-o", str(out), "--no-progress"]) == 0
    got = read_out(out)
    want = real_clf.predict([r["text"] for r in rows])
    assert [(r["category"], r["language"], r["model_version"]) for r in got] == [
        (t.category, t.language, real_clf.version) for t in want]
    assert [r["confidence"] for r in got] == pytest.approx([t.confidence for t in want], abs=1e-5)
