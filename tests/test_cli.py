from __future__ import annotations

import json

from classifier.cli import main


def test_tag_skips_bad_lines_and_reports_them(fake_model_dir, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    with open(src, "wb") as fh:
        fh.write(json.dumps({"text": "hello world", "id": "a"}).encode() + b"\n")
        fh.write(b"{not json\n")
        fh.write(b'{"text": "caf\xff"}\n')  # invalid UTF-8
        fh.write(json.dumps({"messages": [{"role": "user", "content": "translate"}]}).encode() + b"\n")
        fh.write(json.dumps({"text": 5}).encode() + b"\n")
        fh.write(json.dumps({"foo": "bar"}).encode() + b"\n")
        fh.write(json.dumps({"request": {"messages": [{"role": "user", "content": "code"}]}}).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["tag", str(src), "-o", str(out), "--model", str(fake_model_dir)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 4, 7]
    assert rows[0]["id"] == "a" and "scores" not in rows[0]
    err = capsys.readouterr().err
    for n, why in ((2, "not JSON"), (3, "invalid UTF-8"), (5, "text: expected a string"), (6, "expected")):
        assert f"in.jsonl:{n}: skipped: {why}" in err
    assert "tagged 3 rows, skipped 4 bad rows" in err


def test_classify_prints_json(fake_model_dir, capsys):
    assert main(["classify", "hello", "--model", str(fake_model_dir), "--scores"]) == 0
    d = json.loads(capsys.readouterr().out.strip())
    assert len(d["scores"]) == 13 and d["category"] in d["scores"]
