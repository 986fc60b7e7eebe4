"""Load benchmark: the real server (uvicorn, its own process) driven by a client process.

    python bench/load.py [--model models/default] [--clients 32] [--duration 30] [--out reports/load.json]

In one run: (1) the classifier's in-process batch throughput on the same prompts, (2) a closed loop of
``--clients`` concurrent clients for ``--duration`` s of mixed gold prompts (saturation), (3) an open loop at half
the saturation rate, (4) SIGTERM, then the rows in the store against the acknowledged requests.
Figures are printed (and written to --out); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOLD = ROOT.parent / "shared" / "data" / "eval" / "gold_v1.jsonl"


def prompts(n: int) -> list[dict]:
    lines = [x for x in GOLD.read_text(encoding="utf-8").split("\n") if x.strip()]
    random.Random(0).shuffle(lines)
    return [{"text": json.loads(line)["text"]} for line in lines[:n]]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def in_process_throughput(model: str, items: list[dict], seconds: float = 15.0) -> float:
    from classifier import Classifier

    clf = Classifier.load(model)
    texts = [it["text"] for it in items]
    clf.predict(texts[:64])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for s in range(0, len(texts), 64):
            clf.predict(texts[s : s + 64])
            n += len(texts[s : s + 64])
            if time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0)


# -- client process ---------------------------------------------------------------------------------------------
class Tally:
    """Status counts, acknowledged requests and their latencies, shared by both loops."""

    def __init__(self) -> None:
        self.lat: list[float] = []
        self.status: dict[str, int] = {}
        self.acked = 0

    async def post(self, c, item: dict) -> bool:
        import httpx

        t = time.perf_counter()
        try:
            r = await c.post("/v1/classify", json=item)
            code = str(r.status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        self.status[code] = self.status.get(code, 0) + 1
        if code != "200":
            return False
        self.acked += 1
        self.lat.append(time.perf_counter() - t)
        return True

    def summary(self, wall: float) -> dict:
        return summary(self.lat, self.status, self.acked, wall)


async def closed_loop(url: str, items: list[dict], clients: int, duration: float) -> dict:
    import httpx

    tally = Tally()
    in_window = 0
    end = time.perf_counter() + duration

    async def worker(k: int, c: httpx.AsyncClient) -> None:
        nonlocal in_window
        rng = random.Random(k)
        while time.perf_counter() < end:
            if await tally.post(c, rng.choice(items)) and time.perf_counter() <= end:
                in_window += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k, c) for k in range(clients)))
        wall = time.perf_counter() - t0
    res = tally.summary(wall)
    res["requests_per_s"] = in_window / duration  # completions inside the window, not the drain after it
    return res


async def open_loop(url: str, items: list[dict], rate: float, duration: float) -> dict:
    import httpx

    tally = Tally()
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=256)) as c:
        tasks, t0, i = [], time.perf_counter(), 0
        while (now := time.perf_counter()) - t0 < duration:
            due = t0 + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(tally.post(c, rng.choice(items))))
            i += 1
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return tally.summary(wall)


def summary(lat: list[float], status: dict[str, int], acked: int, wall: float) -> dict:
    errors = sum(v for k, v in status.items() if k != "200")
    return {"requests_per_s": acked / wall, "p50_ms": pct(lat, 0.50), "p95_ms": pct(lat, 0.95),
            "p99_ms": pct(lat, 0.99), "acknowledged": acked, "errors": errors, "status": status,
            "wall_s": wall}


def client_main(args: argparse.Namespace) -> None:
    items = prompts(args.n)
    if args.rate:
        res = asyncio.run(open_loop(args.client, items, args.rate, args.duration))
    else:
        res = asyncio.run(closed_loop(args.client, items, args.clients, args.duration))
    print(json.dumps(res))


def run_client(url: str, args: argparse.Namespace, rate: float = 0.0, duration: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--client", url, "--clients", str(args.clients), "--n", str(args.n),
           "--duration", str(duration or args.duration), "--rate", str(rate)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- orchestration ----------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "default"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--n", type=int, default=2000, help="gold prompts to draw from")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        client_main(args)
        return

    items = prompts(args.n)
    print(f"in-process batch throughput (batch 64, {len(items)} gold prompts)…", flush=True)
    inproc = in_process_throughput(args.model, items)
    print(f"  {inproc:.1f} texts/s", flush=True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    db = Path(tempfile.mkdtemp()) / "load.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "PROMPT_TAGGER_API_KEY"}
    server = subprocess.Popen([sys.executable, "-m", "classifier.cli", "serve", "--port", str(port),
                               "--model", args.model, "--db", str(db), "--log-level", "warning"], cwd=ROOT, env=env)
    import httpx

    deadline = time.time() + 300
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit("server did not start")
        time.sleep(0.2)
    try:
        warm = run_client(url, args, duration=3)  # warm-up; its rows count as acknowledged too
        print(f"closed loop: {args.clients} clients x {args.duration:.0f} s…", flush=True)
        sat = run_client(url, args)
        half = sat["requests_per_s"] / 2
        print(f"open loop at half the saturation rate ({half:.1f} req/s) x {args.duration / 2:.0f} s…", flush=True)
        hal = run_client(url, args, rate=half, duration=args.duration / 2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    con.close()
    report = {"in_process_texts_per_s": inproc, "saturation": sat, "half_rate": hal, "rows_stored": rows}
    report["acknowledged_total"] = warm["acknowledged"] + sat["acknowledged"] + hal["acknowledged"]
    print_report(report, args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))


def print_report(r: dict, args: argparse.Namespace) -> None:
    s, h = r["saturation"], r["half_rate"]
    print()
    print(f"classifier in-process batch throughput : {r['in_process_texts_per_s']:8.1f} texts/s")
    print(f"service, {args.clients} clients (saturation)     : {s['requests_per_s']:8.1f} req/s "
          f"({100 * s['requests_per_s'] / r['in_process_texts_per_s']:.0f}% of in-process)")
    print(f"  latency p50 / p95 / p99              : {s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['p99_ms']:.0f} ms")
    print(f"  errors                               : {s['errors']}  {s['status']}")
    print(f"service at half saturation ({h['requests_per_s']:.1f} req/s)")
    print(f"  latency p50 / p95 / p99              : {h['p50_ms']:.0f} / {h['p95_ms']:.0f} / {h['p99_ms']:.0f} ms")
    print(f"  errors                               : {h['errors']}  {h['status']}")
    print(f"rows stored / acknowledged (after SIGTERM): {r['rows_stored']} / {r['acknowledged_total']}")


if __name__ == "__main__":
    main()
