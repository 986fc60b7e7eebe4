from __future__ import annotations

import os

import pytest

from classifier.cli import main

from .test_batch import make_rows, read_out, write_jsonl

pytest.importorskip("ray", reason="Ray is not installed: pip install 'prompt-tagger[ray]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'prompt-tagger[ray]'")


@pytest.fixture(autouse=True)
def _no_ray_telemetry(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_ray_engine_output_equals_local_engine(fake_model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_rows(120)
    src = write_jsonl(tmp_path / "a.jsonl", rows[:60], [b"{broken"])
    pq.write_table(pa.table({k: [r.get(k) for r in rows[60:]] for k in ("request_id", "timestamp", "model")}
                            | {"text": [r.get("text") or r["request"]["messages"][0]["content"] for r in rows[60:]]}),
                   tmp_path / "b.parquet", row_group_size=7)
    inputs = [str(src), str(tmp_path / "b.parquet")]
    common = ["--model", str(fake_model_dir), "--chunk-rows", "20", "--no-progress"]
    assert main(["tag", *inputs, "-o", str(tmp_path / "local"), *common]) == 0
    # 2 actors on a 3-CPU local Ray: one CPU stays free for Ray Data's own tasks
    assert main(["tag", *inputs, "-o", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2", *common]) == 0
    local, ray_ = read_out(tmp_path / "local"), read_out(tmp_path / "ray")
    assert len(local) == 120 and local == ray_
    files = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").glob("day=*/*"))
    assert files == sorted(p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray").glob("day=*/*"))
    assert (tmp_path / "local" / "errors.jsonl").read_text() == (tmp_path / "ray" / "errors.jsonl").read_text()
    assert '"line": 61' in (tmp_path / "ray" / "errors.jsonl").read_text()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
