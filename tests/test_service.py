from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

from .service_helpers import StubClassifier, wait_written

CHAT = {"model": "gpt-4o", "messages": [{"role": "system", "content": "You are terse."},
                                        {"role": "user", "content": "translate hello to French"}]}


def make(tmp_path, clf, **kw) -> TestClient:
    settings = Settings(**{"db_path": str(tmp_path / "stats.sqlite3"), "api_key": None, **kw})
    return TestClient(create_app(settings, classifier=clf))


@pytest.fixture
def client(tmp_path, fake_clf):
    with make(tmp_path, fake_clf, max_body_bytes=200_000) as c:
        yield c


def rows(tmp_path, sql="SELECT COUNT(*) FROM requests"):
    con = sqlite3.connect(tmp_path / "stats.sqlite3")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# -- endpoints -----------------------------------------------------------------------------------------------
def test_classify_text_and_chat_request(client, fake_clf):
    r = client.post("/v1/classify", json={"text": "write a python function", "metadata": {"request_id": "r1"}})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["category"] in fake_clf.labels and set(d["scores"]) == set(fake_clf.labels)
    assert d["model_version"] == fake_clf.version and d["request_id"] == "r1"
    assert isinstance(d["confident"], bool) and d["language"]
    r = client.post("/v1/classify", json={"request": CHAT})
    assert r.status_code == 200 and r.json()["category"] in fake_clf.labels
    # the same text classified directly gives the same answer
    want = fake_clf.predict(["You are terse.\n\ntranslate hello to French"])[0]
    assert r.json()["category"] == want.category


def test_batch_keeps_order_and_matches_single_calls(client, fake_clf):
    texts = ["hello world", "translate the query", "python code", "你好", "a"]
    r = client.post("/v1/classify/batch", json={"items": [{"text": t} for t in texts]})
    assert r.status_code == 200, r.text
    got = [d["category"] for d in r.json()["items"]]
    assert got == [t.category for t in fake_clf.predict(texts)]


def test_health_version_metrics(client, fake_clf):
    assert client.get("/health").json() == {"status": "ok", "model_version": fake_clf.version}
    assert client.get("/version").json() == fake_clf.manifest
    client.post("/v1/classify/batch", json={"items": [{"text": "hello"}, {"text": "world"}]})
    m = client.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    text = m.text
    assert 'prompt_tagger_http_requests_total{route="/v1/classify/batch",status="200"} 1' in text
    assert 'prompt_tagger_http_request_duration_seconds_bucket{route="/v1/classify/batch",le="+Inf"} 1' in text
    assert "prompt_tagger_inference_batch_size_count" in text and "prompt_tagger_queue_depth 0" in text
    assert "prompt_tagger_language_total{language=" in text
    assert sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prompt_tagger_classified_total{")) == 2


def test_dashboard_and_openapi_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"] and "dashboard.js" in r.text
    assert client.get("/static/dashboard.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/classify/batch", "/v1/ingest", "/v1/stats", "/v1/feedback"} <= set(paths)


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"text": 5}, "text"),
    ({"txt": "hello"}, "txt"),
    ({}, "exactly one of"),
    ({"text": "a", "request": CHAT}, "exactly one of"),
    ({"request": {"messages": "hi"}}, "request.messages"),
    ({"request": {"messages": [{"role": "user", "content": 7}]}}, "request.messages[0].content"),
    ({"text": "a", "metadata": {"prompt_tokens": "many"}}, "prompt_tokens"),
    ({"text": "a", "metadata": {"prompt_tokens": -1}}, "prompt_tokens"),
    ({"text": "a", "metadata": {"region": "eu"}}, "region"),
])
def test_bad_items_get_422_naming_the_field(client, body, field):
    r = client.post("/v1/classify", json=body)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])


def test_malformed_json_and_wrong_top_level_type(client):
    r = client.post("/v1/classify", content=b'{"text": "unterminated', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "json" in r.text.lower()
    r = client.post("/v1/classify/batch", json={"items": {"text": "not a list"}})
    assert r.status_code == 422 and "items" in r.text


def test_batch_size_limits(tmp_path, fake_clf):
    with make(tmp_path, fake_clf, max_batch_items=4) as c:
        r = c.post("/v1/classify/batch", json={"items": [{"text": "x"}] * 5})
        assert r.status_code == 422 and "at most 4 items" in r.text and "items" in r.text
        assert c.post("/v1/classify/batch", json={"items": []}).status_code == 422
        assert c.post("/v1/classify/batch", json={"items": [{"text": "x"}] * 4}).status_code == 200
        r = c.post("/v1/classify/batch", json={"items": [{"text": "x"}, {"text": 3}]})
        assert r.status_code == 422 and ["body", "items", 1, "text"] == r.json()["detail"][0]["loc"]


def test_oversize_body_413_with_and_without_content_length(tmp_path, fake_clf):
    with make(tmp_path, fake_clf, max_body_bytes=1000) as c:
        r = c.post("/v1/classify", json={"text": "x" * 2000})
        assert r.status_code == 413 and "PROMPT_TAGGER_MAX_BODY_BYTES" in r.text

        def chunks():
            yield b'{"text": "'
            for _ in range(20):
                yield b"y" * 100
            yield b'"}'

        r = c.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v1/classify", json={"text": "short"}).status_code == 200
    assert rows(tmp_path) == [(1,)]


def test_long_text_is_truncated_not_rejected(client):
    r = client.post("/v1/classify", json={"text": "hello world " * 10_000})
    assert r.status_code == 200


# -- auth ---------------------------------------------------------------------------------------------------
def test_api_key_required_everywhere_but_health(tmp_path, fake_clf):
    with make(tmp_path, fake_clf, api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        for method, path, body in [("post", "/v1/classify", {"text": "hi"}), ("get", "/v1/stats", None),
                                   ("get", "/metrics", None), ("get", "/version", None), ("get", "/v1/live", None),
                                   ("post", "/v1/feedback", {"label": "other", "text": "hi"}),
                                   ("post", "/v1/classify/batch", {"items": [{"text": "hi"}]})]:
            kw = {"json": body} if body else {}
            r = getattr(c, method)(path, **kw)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            r = getattr(c, method)(path, headers={"Authorization": "Bearer wrong"}, **kw)
            assert r.status_code == 401, path
            r = getattr(c, method)(path, headers={"Authorization": "Bearer s3cret"}, **kw)
            assert r.status_code in (200, 201), (path, r.text)
        r = c.post("/v1/ingest", content=b'{"text": "hi"}\n')
        assert r.status_code == 401


# -- ingest -------------------------------------------------------------------------------------------------
def test_ingest_streams_one_result_per_line_and_survives_bad_lines(tmp_path, fake_clf):
    lines = [
        json.dumps({"text": "hello world", "request_id": "a", "model": "m1", "prompt_tokens": 3}),
        "{not json",
        "",
        json.dumps(CHAT | {"id": "chat-1"}),
        json.dumps({"text": 5}),
        json.dumps({"foo": "bar"}),
        json.dumps("a bare string prompt"),
        json.dumps({"text": "x" * 600}),
        json.dumps({"request": {"messages": [{"role": "user", "content": "code"}]}, "metadata": {"model": "m2"}}),
    ]
    body = ("\n".join(lines)).encode()  # no trailing newline: the last line still counts

    def chunks():  # arrive in awkward pieces, splitting lines
        for i in range(0, len(body), 37):
            yield body[i : i + 37]

    with make(tmp_path, fake_clf, max_body_bytes=500) as c:
        r = c.post("/v1/ingest", content=chunks(), headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        out = [json.loads(line) for line in r.text.splitlines()]
        app = c.app
        wait_written(app, 4)
    assert [o["line"] for o in out] == [1, 2, 4, 5, 6, 7, 8, 9]
    ok = {o["line"]: o for o in out if "error" not in o}
    err = {o["line"]: o["error"] for o in out if "error" in o}
    assert set(ok) == {1, 4, 7, 9}
    assert ok[1]["request_id"] == "a" and ok[4]["request_id"] == "chat-1"
    assert err[2].startswith("not JSON") and "text" in err[5] and "expected" in err[6]
    assert "longer than 500 bytes" in err[8]
    assert sorted(rows(tmp_path, "SELECT source, model FROM requests"), key=str) == sorted(
        [("ingest", "m1"), ("ingest", "gpt-4o"), ("ingest", None), ("ingest", "m2")], key=str)


# -- stats --------------------------------------------------------------------------------------------------
def test_stats_buckets_groups_weights_and_unclassified(tmp_path):
    def item(text, ts, model, tokens):
        return {"text": text, "metadata": {"timestamp": ts, "model": model, "prompt_tokens": tokens,
                                           "completion_tokens": 1}}

    items = [  # 2026-11-02 is a Monday
        item("programming a", "2026-11-02T10:00:00Z", "m1", 9),
        item("programming b", "2026-11-08T23:59:00Z", "m1", 9),  # Sunday: same week
        item("legal c", "2026-11-04T00:00:00Z", "m2", 19),
        item("legal d?!", "2026-11-04T00:00:00Z", "m2", 99),  # not confident: unclassified
        item("health e", "2026-11-09T00:00:00Z", "m1", 4),  # next Monday
    ]
    with make(tmp_path, StubClassifier()) as c:
        assert c.post("/v1/classify/batch", json={"items": items}).status_code == 200
        wait_written(c.app, 5)
        s = c.get("/v1/stats", params={"bucket": "week"}).json()
        assert [b["bucket"] for b in s["buckets"]] == ["2026-11-02", "2026-11-09"]
        w1 = s["buckets"][0]
        assert (w1["total"], w1["unclassified"], w1["requests"]) == (3, 1, 4)
        assert {g["category"]: g["share"] for g in w1["groups"]} == {"programming": pytest.approx(2 / 3, abs=1e-5),
                                                                     "legal": pytest.approx(1 / 3, abs=1e-5)}
        s = c.get("/v1/stats", params={"bucket": "week", "weight": "tokens"}).json()
        w1 = s["buckets"][0]
        assert (w1["total"], w1["unclassified"]) == (10 + 10 + 20, 100)
        assert {g["category"]: g["value"] for g in w1["groups"]} == {"programming": 20, "legal": 20}
        s = c.get("/v1/stats", params={"bucket": "day", "start": "2026-11-04T00:00:00Z",
                                       "end": "2026-11-09T00:00:00Z"}).json()
        assert [b["bucket"] for b in s["buckets"]] == ["2026-11-04", "2026-11-08"]
        s = c.get("/v1/stats", params={"bucket": "all", "group_by": "model,category"}).json()
        pairs = {(g["model"], g["category"]): g["value"] for g in s["buckets"][0]["groups"]}
        assert pairs == {("m1", "programming"): 2, ("m2", "legal"): 1, ("m1", "health"): 1}
        s = c.get("/v1/stats", params={"bucket": "all", "group_by": "language"}).json()
        assert s["buckets"][0]["groups"] == [{"language": "en", "value": 4, "share": 1.0}]
        for bad in ({"group_by": "colour"}, {"group_by": "model,model"}, {"bucket": "month"},
                    {"weight": "bytes"}, {"start": "yesterday"}):
            r = c.get("/v1/stats", params=bad)
            assert r.status_code == 422 and next(iter(bad)) in r.text, bad


# -- feedback -----------------------------------------------------------------------------------------------
def test_feedback_is_stored_with_the_prediction(tmp_path):
    with make(tmp_path, StubClassifier()) as c:
        c.post("/v1/classify", json={"text": "legal question", "metadata": {"request_id": "q1"}})
        wait_written(c.app, 1)
        r = c.post("/v1/feedback", json={"request_id": "q1", "label": "finance", "comment": "about tax"})
        assert r.status_code == 201 and r.json()["predicted"] == "legal"
        assert c.post("/v1/feedback", json={"text": "some prompt", "label": "writing"}).status_code == 201
        r = c.post("/v1/feedback", json={"text": "x", "label": "cooking"})
        assert r.status_code == 422 and "label" in r.text and "programming" in r.text
        assert c.post("/v1/feedback", json={"label": "other"}).status_code == 422
    got = rows(tmp_path, "SELECT request_id, text, label, predicted, comment FROM feedback ORDER BY id")
    assert got == [("q1", None, "finance", "legal", "about tax"), (None, "some prompt", "writing", None, None)]


# -- storage ------------------------------------------------------------------------------------------------
def test_text_is_not_stored_unless_asked(tmp_path, fake_clf):
    with make(tmp_path, fake_clf) as c:
        c.post("/v1/classify", json={"text": "secret prompt"})
    assert rows(tmp_path, "SELECT text FROM requests") == [(None,)]
    (tmp_path / "stats.sqlite3").unlink()
    with make(tmp_path, fake_clf, store_text=True) as c:
        c.post("/v1/classify", json={"text": "secret prompt"})
    assert rows(tmp_path, "SELECT text FROM requests") == [("secret prompt",)]
    assert rows(tmp_path, "PRAGMA journal_mode") == [("wal",)]


def test_shutdown_writes_every_acknowledged_row(tmp_path, fake_clf):
    # a long flush interval: only the shutdown flush can write these rows
    with make(tmp_path, fake_clf, store_flush_ms=60_000, store_batch_rows=10_000) as c:
        acked = 0
        for i in range(30):
            r = c.post("/v1/classify/batch", json={"items": [{"text": f"prompt {i} {j}"} for j in range(7)]})
            acked += len(r.json()["items"])
        assert c.app.state.store.stats.written == 0
    assert rows(tmp_path) == [(acked,)]


# -- batching, overload, event loop --------------------------------------------------------------------------
def _run(app, coro_fn):
    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await coro_fn(c)

    return asyncio.run(main())


def test_overload_answers_503_with_retry_after(tmp_path):
    gate = threading.Event()
    stub = StubClassifier(gate)
    app = create_app(Settings(db_path=str(tmp_path / "s.db"), max_queue=3, max_batch_size=1, max_wait_ms=0,
                              retry_after_s=2), classifier=stub)

    async def scenario(c):
        held = [asyncio.create_task(c.post("/v1/classify", json={"text": f"writing {i}"})) for i in range(3)]
        await asyncio.sleep(0.2)
        over = await c.post("/v1/classify", json={"text": "writing late"})
        over_batch = await c.post("/v1/classify/batch", json={"items": [{"text": "writing"}]})
        health = await c.get("/health")  # the event loop is free while inference is held
        metrics = (await c.get("/metrics")).text
        gate.set()
        done = await asyncio.gather(*held)
        return over, over_batch, health, metrics, done

    over, over_batch, health, metrics, done = _run(app, scenario)
    assert over.status_code == 503 and over.headers["retry-after"] == "2" and "overloaded" in over.text
    assert over_batch.status_code == 503
    assert health.status_code == 200
    assert "prompt_tagger_queue_depth 3" in metrics and "prompt_tagger_overload_rejections_total 2" in metrics
    assert [r.status_code for r in done] == [200, 200, 200]
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("SELECT COUNT(*) FROM requests").fetchone() == (3,)


def test_concurrent_requests_share_one_inference_run(tmp_path):
    gate = threading.Event()
    stub = StubClassifier(gate)
    app = create_app(Settings(db_path=str(tmp_path / "s.db"), max_batch_size=16, max_wait_ms=50),
                     classifier=stub)

    async def scenario(c):
        first = asyncio.create_task(c.post("/v1/classify", json={"text": "legal first"}))
        await asyncio.sleep(0.1)  # the first run is held; the next ten queue up behind it
        rest = [asyncio.create_task(c.post("/v1/classify", json={"text": f"health {i}"})) for i in range(10)]
        await asyncio.sleep(0.1)
        gate.set()
        return await first, await asyncio.gather(*rest)

    first, rest = _run(app, scenario)
    assert first.json()["category"] == "legal" and {r.json()["category"] for r in rest} == {"health"}
    assert stub.calls == [1, 10]


def test_service_does_not_import_heavy_libraries():
    code = ("import sys, service, service.app, service.cli, service.store, service.batching\n"
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers', 'sklearn') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
