"""Compare language detectors on gold `lang`, mgsm (11 languages) and short prompts of 2-6 words.

Usage: python bench/langid_compare.py [--out reports/langid.json]
The short-prompt set is drawn from written_chat_v1 and the team data (their `lang` fields), not from gold.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier.langid import DETECTORS, LanguageDetector  # noqa: E402
from classifier.text import to_text  # noqa: E402
from training import data as datamod  # noqa: E402


def sets() -> dict[str, list[tuple[str, str]]]:
    d = datamod.shared_data_dir()
    gold = [(to_text(r["text"]), r["lang"]) for r in datamod.load_gold(d / "eval" / "gold_v1.jsonl")]
    mgsm = [(r["text"], r["lang_hint"]) for r in map(json.loads, gzip.open(d / "sources" / "mgsm.jsonl.gz", "rt"))]
    short = []
    rows = list(map(json.loads, gzip.open(d / "sources" / "written_chat_v1.jsonl.gz", "rt")))
    for p in sorted(datamod.TEAM_DIR.glob("*.jsonl")):
        rows += [json.loads(line) for line in open(p, encoding="utf-8") if line.strip()]
    for r in rows:
        t = r.get("text")
        if not isinstance(t, str) or r.get("lang") in (None, "und"):
            continue
        n = len(t.split())
        cjk = r["lang"] in ("zh", "ja", "ko")
        if (cjk and 2 <= len(t) <= 12) or (not cjk and 2 <= n <= 6):
            short.append((t, r["lang"]))
    return {"gold": gold, "mgsm": mgsm, "short_2_6_words": short}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="reports/langid.json")
    args = ap.parse_args()
    data = sets()
    res: dict[str, dict[str, float]] = {}
    for name in DETECTORS:
        det = LanguageDetector(name)
        det("warm up")
        row: dict[str, float] = {}
        n_all, t_all = 0, 0.0
        for sname, items in data.items():
            t = time.perf_counter()
            ok = sum(det(text)[0] == lang for text, lang in items)
            t_all += time.perf_counter() - t
            n_all += len(items)
            row[sname] = round(ok / len(items), 4)
        row["texts_per_s"] = round(n_all / t_all)
        res[name] = row
    print(f"{'detector':16s} " + " ".join(f"{s + f' (n={len(v)})':>24s}" for s, v in data.items())
          + f" {'texts/s':>9s}")
    for name, row in res.items():
        print(f"{name:16s} " + " ".join(f"{row[s]:24.3f}" for s in data) + f" {row['texts_per_s']:9d}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"sizes": {s: len(v) for s, v in data.items()}, "results": res},
                                         indent=2) + "\n")


if __name__ == "__main__":
    main()
