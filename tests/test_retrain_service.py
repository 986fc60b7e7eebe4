"""Hot reload, /v1/drift, and the round trip: feedback -> train -> gate -> promote -> reload under load."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from classifier.labels import LABELS
from service import app as service_app
from service.app import create_app
from service.batching import MicroBatcher
from service.settings import Settings
from training.gate import GateConfig, gate_candidate
from training.registry import Registry
from training.retrain import retrain

from .retrain_helpers import GOLD_TEXTS, FakeTrain, base_examples, gold_from, write_fake_version
from .service_helpers import wait_written

ADMIN = {"Authorization": "Bearer adm"}


def test_batch_in_flight_finishes_on_the_old_model():
    started, release = threading.Event(), threading.Event()

    def old(texts):
        started.set()
        release.wait(5)
        return [("old", t) for t in texts]

    async def go():
        b = MicroBatcher(old, max_wait_ms=0)
        await b.start()
        first = asyncio.create_task(b.submit(["a"]))
        await asyncio.to_thread(started.wait, 5)
        b.swap(lambda texts: [("new", t) for t in texts])
        second = asyncio.create_task(b.submit(["b"]))
        await asyncio.sleep(0.05)
        release.set()
        out = await first, await second
        await b.stop()
        return out

    assert asyncio.run(go()) == ([("old", "a")], [("new", "b")])


@pytest.fixture
def reg(tmp_path) -> Registry:
    root = tmp_path / "models"
    write_fake_version(root / "default", list(LABELS), seed=1, version="shipped-1",
                       extra={"data": {"counts": {"by_label": {lab: 10 for lab in LABELS}}}})
    return Registry(root)


def client_for(reg: Registry, tmp_path, **kw) -> TestClient:
    s = Settings(db_path=str(tmp_path / "stats.sqlite3"), model=str(reg.served), store_text=True,
                 max_wait_ms=1, **kw)
    return TestClient(create_app(s))


def hammer(client: TestClient, stop: threading.Event, results: list, n_threads: int = 4) -> list[threading.Thread]:
    def worker(i: int) -> None:
        k = 0
        while not stop.is_set():
            start = time.perf_counter()
            r = client.post("/v1/classify", json={"text": f"hello world {i} {k}"})
            results.append((r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text,
                            start, time.perf_counter()))
            k += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def reload_under_load(client: TestClient) -> tuple[list, dict, float, float]:
    stop, results = threading.Event(), []
    threads = hammer(client, stop, results)
    time.sleep(0.3)
    t0 = time.perf_counter()
    r = client.post("/admin/reload", headers=ADMIN)
    t1 = time.perf_counter()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert r.status_code == 200, r.text
    return results, r.json(), t0, t1


def test_admin_reload_swaps_under_load_without_failures(reg, tmp_path, monkeypatch):
    write_fake_version(reg.root / "v2", list(LABELS), seed=2)
    with client_for(reg, tmp_path, admin_key="adm") as c:
        load = service_app.Classifier.load

        def slow_load(*a, **kw):  # a real model takes seconds to load; the fake one must too, or nothing overlaps
            time.sleep(0.5)
            return load(*a, **kw)

        monkeypatch.setattr(service_app.Classifier, "load", slow_load)
        assert c.post("/admin/reload").status_code == 401
        assert c.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/version").json()["version"] == "shipped-1"
        reg.promote("v2")
        results, body, t0, t1 = reload_under_load(c)
        assert body["previous"] == "shipped-1" and body["version"] == "v2-s2"
        assert {r[0] for r in results} == {200}, [r for r in results if r[0] != 200][:3]
        versions = [r[1] for r in results]
        assert set(versions) == {"shipped-1", "v2-s2"}
        assert any(t0 < end < t1 for _, _, _, end in results)  # requests completed while the reload ran
        assert all(v == "v2-s2" for _, v, start, _ in results if start > t1)  # nothing old after the swap
        assert c.get("/version").json()["version"] == "v2-s2"
        assert c.get("/health").json()["model_version"] == "v2-s2"


def test_reload_refuses_a_broken_folder_and_keeps_serving(reg, tmp_path):
    with client_for(reg, tmp_path, api_key="adm") as c:  # the API key doubles as the admin key
        (reg.served / "head.npz").write_bytes(b"tampered")
        r = c.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 409 and "still serving shipped-1" in r.json()["detail"]
        assert c.post("/v1/classify", json={"text": "hi"}, headers=ADMIN).json()["model_version"] == "shipped-1"


def test_admin_routes_off_without_a_key(reg, tmp_path):
    with client_for(reg, tmp_path) as c:
        r = c.post("/admin/reload")
        assert r.status_code == 403 and "PROMPT_TAGGER_ADMIN_KEY" in r.json()["detail"]


def test_file_watch_reloads_after_promotion(reg, tmp_path):
    write_fake_version(reg.root / "v2", list(LABELS), seed=2)
    with client_for(reg, tmp_path, reload_watch_s=0.05) as c:
        reg.promote("v2")
        deadline = time.time() + 10
        while c.get("/version").json()["version"] != "v2-s2":
            assert time.time() < deadline, "the watch did not reload"
            time.sleep(0.05)


def test_drift_endpoint(reg, tmp_path):
    with client_for(reg, tmp_path) as c:
        for i in range(30):
            assert c.post("/v1/classify", json={"text": f"python code {i}"}).status_code == 200
        deadline = time.time() + 5
        while True:
            r = c.get("/v1/drift", params={"days": 1})
            if r.json()["n"] == 30 or time.time() > deadline:
                break
            time.sleep(0.05)
        d = r.json()
        assert r.status_code == 200 and d["n"] == 30 and d["model_version"] == "shipped-1"
        assert d["vs_training"]["psi"] > 0.25  # one category against a uniform training mix
        assert d["window"]["days"] == 1 and d["advice"]
        assert c.get("/v1/drift", params={"days": 0}).status_code == 422


def test_round_trip_feedback_train_gate_promote_reload(reg, tmp_path):
    """feedback through the service -> train (fake encoder) -> gate -> promote -> hot reload under load."""
    agentic = [{"text": f"use the booking tool to reserve table {i}", "label": "agentic"} for i in range(20)]
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps(r) + "\n" for r in agentic))
    with client_for(reg, tmp_path, admin_key="adm") as c:
        r = c.post("/v1/classify", json={"text": "what does a notary do", "metadata": {"request_id": "q1"}})
        assert r.status_code == 200
        wait_written(c.app, 1)  # the store writes asynchronously; feedback looks the text up there
        assert c.post("/v1/feedback", json={"request_id": "q1", "label": "legal"}).status_code == 201
        assert c.post("/v1/feedback", json={"text": "wire money abroad", "label": "finance"}).status_code == 201
        fake = FakeTrain()
        res = retrain(reg.root / "v2", reg.served, add=[new], feedback_db=tmp_path / "stats.sqlite3",
                      new_labels=["agentic"], min_new_label=20, base=base_examples(list(LABELS)), train_fn=fake,
                      log=lambda s: None)
        texts = {e.text: e.label for e in fake.calls[0]["examples"]}
        assert texts["what does a notary do"] == "legal" and texts["wire money abroad"] == "finance"
        assert res.manifest["lineage"]["feedback"]["rows"] == 2
        gold = gold_from(res.out, tmp_path / "gold.jsonl", GOLD_TEXTS)
        g = gate_candidate(reg, "v2", gold, GateConfig(), engine="graph")
        assert g.passed, g.format()
        reg.promote("v2", gate=g.to_dict())
        results, body, _, _ = reload_under_load(c)
        assert {r[0] for r in results} == {200}
        new_version = res.manifest["version"]
        assert body["version"] == new_version and "agentic" in body["labels"]
        tag = c.post("/v1/classify", json={"text": "use the booking tool please"}).json()
        assert tag["model_version"] == new_version and "agentic" in tag["scores"]
        # feedback with the new label is accepted now that the served model has it
        assert c.post("/v1/feedback", json={"text": "file my expense report via the tool",
                                            "label": "agentic"}).status_code == 201
        # the next retrain reads only feedback it has not used
        res3 = retrain(reg.root / "v3", reg.root / "v2", feedback_db=tmp_path / "stats.sqlite3",
                       base=base_examples(list(LABELS)), train_fn=fake, log=lambda s: None)
        assert res3.manifest["lineage"]["feedback"]["rows"] == 1
