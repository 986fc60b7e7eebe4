"""The service as it runs in production: a real uvicorn process on 127.0.0.1 (SIGTERM, dashboard in Chromium)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, db: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        full_env = {**os.environ, "PROMPT_TAGGER_MAX_WAIT_MS": "2", **env}
        full_env.pop("PROMPT_TAGGER_API_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "classifier.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--model", str(model), "--db", str(db), "--log-level", "warning"],
            cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.proc.kill()
                raise RuntimeError(f"server did not start: {self.proc.stdout.read().decode()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def rows(self) -> int:
        con = sqlite3.connect(self.db)
        try:
            return con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        finally:
            con.close()


def test_sigterm_mid_load_loses_no_acknowledged_row(fake_model_dir, tmp_path):
    # a long store flush interval: rows still queued at SIGTERM must be written by the shutdown flush
    srv = Server(fake_model_dir, tmp_path / "stats.sqlite3", PROMPT_TAGGER_STORE_FLUSH_MS="5000",
                 PROMPT_TAGGER_STORE_BATCH_ROWS="100000")
    acked = [0] * 8
    errors: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 3:
                        r = c.post("/v1/classify", json={"text": f"hello world {k} {i}"})
                        n = 1
                    else:
                        r = c.post("/v1/classify/batch", json={"items": [{"text": f"code {k} {i} {j}"}
                                                                         for j in range(5)]})
                        n = 5
                except httpx.TransportError:  # the server has closed: not acknowledged
                    if srv.proc.poll() is not None or stop.is_set():
                        return
                    time.sleep(0.01)
                    continue
                if r.status_code == 200:
                    acked[k] += n
                elif r.status_code != 503:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    mid = sum(acked)
    rc = srv.stop()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done
    assert rc in (0, -signal.SIGTERM), srv.proc.stdout.read().decode()[-2000:]
    assert not errors, errors[:5]
    assert mid > 50, "the load did not get going"
    assert srv.rows() == sum(acked)


@pytest.fixture
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium) to test the "
                    "dashboard")
    return CHROMIUM


PROMPTS = [
    ("Write a Python function that parses ISO dates", "en"), ("把这段话翻译成英文：今天天气很好", "zh"),
    ("Write a short poem about autumn leaves", "en"), ("¿Puede mi casero quedarse con la fianza?", "es"),
    ("What are the side effects of metformin?", "en"), ("Объясни, как работает ипотека", "ru"),
    ("You are Aria, a shy elf. *waves* hello!", "en"), ("10 slogans for a vegan bakery", "en"),
    ("Solve: a train leaves at 3pm at 60 km/h…", "en"), ("Derive the Navier-Stokes equations", "en"),
    ("Which laptop is best for video editing?", "en"), ("Wie kann ich meine Steuern senken?", "de"),
    ("fix this TypeError: 'NoneType' object is not subscriptable", "en"), ("hi", "en"),
]


def gold_prompts(n: int) -> list[str]:
    gold = REPO.parent / "shared" / "data" / "eval" / "gold_v1.jsonl"
    if not gold.exists():
        return [p for p, _ in PROMPTS]
    lines = [x for x in gold.read_text(encoding="utf-8").split("\n") if x.strip()]
    random.Random(0).shuffle(lines)
    return [json.loads(line)["text"] for line in lines[:n]]


def fill(url: str, n: int = 600) -> None:
    """n requests spread over eight weeks, four models, with token counts, sent as NDJSON to /v1/ingest."""
    rng = random.Random(1)
    texts = gold_prompts(n)
    now = datetime(2026, 11, 27, tzinfo=timezone.utc)
    models = ["gpt-4o", "claude-sonnet-4", "deepseek-v3", "llama-3.3-70b"]
    recs = []
    for i in range(n):
        ts = now - timedelta(days=rng.uniform(0, 56))
        recs.append(json.dumps({"text": texts[i % len(texts)], "request_id": f"r{i}", "model": rng.choice(models),
                                "prompt_tokens": rng.randint(10, 2000), "completion_tokens": rng.randint(10, 800),
                                "timestamp": ts.isoformat()}))
    r = httpx.post(url + "/v1/ingest", content="\n".join(recs).encode(), timeout=300)
    assert r.status_code == 200 and len(r.text.splitlines()) == n
    assert not [line for line in r.text.splitlines() if '"error"' in line]


def render_dashboard(chromium: str, url: str, out: Path) -> str:
    base = [chromium, *CHROME_FLAGS, f"--user-data-dir={out.parent / 'chrome-profile'}",
            "--virtual-time-budget=8000", "--window-size=1400,1250"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    subprocess.run([*base, f"--screenshot={out}", url], capture_output=True, timeout=120, check=True)
    return dom


def check_dashboard(dom: str, png: Path) -> None:
    m = re.search(r'data-rendered="(\d+),(\d+),(\d+)"', dom)
    assert m, "the dashboard script did not finish rendering:\n" + dom[-2000:]
    areas, langs, models = map(int, m.groups())
    assert areas >= 3 and dom.count('class="area"') == areas  # stacked areas, one per category
    assert langs >= 2 and dom.count('class="bar"') == langs
    assert models == 4 and "claude-sonnet-4" in dom
    assert dom.count('class="counter"') == 6
    assert png.exists() and png.stat().st_size > 20_000  # a blank page is a few kB


def _dashboard_run(chromium: str, model: Path, tmp_path: Path, n: int, save: bool = False) -> None:
    srv = Server(model, tmp_path / "stats.sqlite3", PROMPT_TAGGER_STORE_FLUSH_MS="50")
    try:
        fill(srv.url, n)
        time.sleep(0.3)
        png = tmp_path / "dashboard.png"
        dom = render_dashboard(chromium, srv.url + "/", png)
        check_dashboard(dom, png)
        if save:  # the real-model screenshot is kept in reports/ (committed, shown in the README)
            reports = REPO / "reports"
            reports.mkdir(exist_ok=True)
            shutil.copy(png, reports / "dashboard.png")
    finally:
        srv.stop()


def test_dashboard_renders_charts_in_headless_chromium(chromium, fake_model_dir, tmp_path):
    _dashboard_run(chromium, fake_model_dir, tmp_path, 300)


@pytest.mark.slow
def test_dashboard_with_the_real_model(chromium, tmp_path):
    model = REPO / "models" / "default"
    if not (model / "manifest.json").exists():
        pytest.skip("models/default is absent")
    _dashboard_run(chromium, model, tmp_path, 1500, save=True)
