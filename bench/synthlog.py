"""A synthetic gateway log built from the shared *source* prompts (never ../shared/data/eval).

Rows: request_id, timestamp (random over ``weeks`` weeks), model (a few names whose mix drifts over time),
either ``text`` or an OpenAI ``request`` body, prompt/completion token counts. Used by bench/batch.py and to make
the sample chart in docs/.

    python bench/synthlog.py -n 20000 -o /tmp/log.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sources"
MODELS = ["gpt-4o-mini", "claude-sonnet", "llama-3-70b", "qwen-2.5-72b", "deepseek-v3"]


def load_prompts(limit_per_source: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
    """(source file, prompt text) pairs, at most ``limit_per_source`` per source file."""
    rng = random.Random(seed)
    out = []
    for f in sorted(SOURCES.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        rng.shuffle(rows)
        for r in rows[:limit_per_source]:
            t = r.get("text")
            if isinstance(t, str) and t.strip():
                out.append((f.name.split(".")[0], t))
    return out


def rows(n: int, weeks: int = 8, seed: int = 0, start: str = "2026-08-03"):
    rng = random.Random(seed)
    prompts = load_prompts(seed=seed)
    t0 = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    span = timedelta(weeks=weeks).total_seconds()
    code = [p for p in prompts if p[0] in ("mbpp",)]
    for i in range(n):
        frac = rng.random()
        ts = t0 + timedelta(seconds=frac * span)
        # the mix drifts: coding traffic grows over the weeks, one model takes over from another
        src, text = rng.choice(code) if rng.random() < 0.25 * frac else rng.choice(prompts)
        w = [3, 2, 1 + 2 * frac, 1, 2 * (1 - frac) + 0.2]
        model = rng.choices(MODELS, weights=w)[0]
        row = {"request_id": f"req-{i:08d}", "timestamp": ts.isoformat().replace("+00:00", "Z"), "model": model}
        if rng.random() < 0.3:
            msgs = [{"role": "user", "content": text}]
            if rng.random() < 0.3:
                msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
            row["request"] = {"model": model, "messages": msgs}
        else:
            row["text"] = text
        row["prompt_tokens"] = max(1, len(text) // 4) + rng.randint(5, 40)
        row["completion_tokens"] = int(rng.lognormvariate(5.5, 0.8))
        yield row


def write(path: Path, n: int, weeks: int = 8, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in rows(n, weeks, seed):
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default="/tmp/synthlog.jsonl.gz")
    a = ap.parse_args()
    print(write(Path(a.output), a.n, a.weeks, a.seed))
