"""``prompt-tagger report``: DuckDB over the tagged Parquet -> CSV tables, PNG charts, one self-contained HTML."""

from __future__ import annotations

import base64
import csv
import html
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..labels import LABELS

TABLES: dict[str, str] = {
    "category_share_weekly": """
        SELECT week, category, count(*) AS requests, sum(tokens) AS tokens,
               count(*) / sum(count(*)) OVER (PARTITION BY week) AS share_requests,
               coalesce(sum(tokens) / nullif(sum(sum(tokens)) OVER (PARTITION BY week), 0), 0) AS share_tokens
        FROM t WHERE week IS NOT NULL GROUP BY week, category ORDER BY week, category""",
    "language_share": """
        SELECT language, count(*) AS requests, count(*) / sum(count(*)) OVER () AS share, sum(tokens) AS tokens
        FROM t GROUP BY ALL ORDER BY requests DESC, language""",
    "model_category": """
        SELECT coalesce(model, '(none)') AS model, category, count(*) AS requests,
               count(*) / sum(count(*)) OVER (PARTITION BY model) AS share
        FROM t GROUP BY model, category ORDER BY model, requests DESC""",
    "top_languages_by_category": """
        SELECT * FROM (
          SELECT category, language, count(*) AS requests,
                 count(*) / sum(count(*)) OVER (PARTITION BY category) AS share,
                 row_number() OVER (PARTITION BY category ORDER BY count(*) DESC, language) AS rank
          FROM t GROUP BY category, language) WHERE rank <= 5 ORDER BY category, rank""",
    "prompt_length_by_category": """
        SELECT category, count(*) AS requests, median(text_chars) AS median_chars,
               quantile_cont(text_chars, 0.9) AS p90_chars, avg(prompt_tokens) AS mean_prompt_tokens
        FROM t GROUP BY ALL ORDER BY median_chars DESC""",
    "confidence_by_category": """
        SELECT category, count(*) FILTER (WHERE confident) AS confident,
               count(*) FILTER (WHERE NOT confident) AS unclassified,
               count(*) FILTER (WHERE confident) / count(*) AS share_confident
        FROM t GROUP BY ALL ORDER BY count(*) DESC, category""",
    "summary": """
        SELECT count(*) AS requests, sum(tokens) AS tokens, strftime(min(timestamp), '%Y-%m-%d %H:%M UTC') AS first,
               strftime(max(timestamp), '%Y-%m-%d %H:%M UTC') AS last,
               count(DISTINCT model) AS models, count(DISTINCT language) AS languages,
               avg(confident::INT) AS share_confident, string_agg(DISTINCT model_version, ' ') AS model_versions
        FROM t""",
}
BY_MODEL = """
        SELECT coalesce(model, '(none)') AS model, week, category, count(*) AS requests,
               count(*) / sum(count(*)) OVER (PARTITION BY model, week) AS share_requests
        FROM t WHERE week IS NOT NULL GROUP BY model, week, category ORDER BY model, week, category"""


def colors() -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    order = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 15]
    return {lab: cmap(order[i % len(order)]) for i, lab in enumerate(LABELS)}


def _day(s: str | None, flag: str) -> date | None:
    if s is None:
        return None
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{flag}: expected a day as YYYY-MM-DD, got {s!r}") from None


def _connect(tagged: str, since: str | None, until: str | None):
    from . import need

    duckdb = need("duckdb")
    root = Path(tagged)
    if not any(root.glob("**/*.parquet")):
        raise ValueError(f"{tagged}: no Parquet files; expected the folder written by `prompt-tagger tag -o DIR`")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    where, params = [], []
    s, u = _day(since, "--since"), _day(until, "--until")
    if s:
        where.append("timestamp >= ?::TIMESTAMPTZ")
        params.append(s.isoformat())
    if u:
        where.append("timestamp < ?::TIMESTAMPTZ")
        params.append((u + timedelta(days=1)).isoformat())
    glob = str(root / "**" / "*.parquet").replace("'", "''")
    con.execute(f"""CREATE TEMP TABLE t AS
        SELECT *, coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0) AS tokens,
               CAST(date_trunc('week', timestamp) AS DATE) AS week
        FROM read_parquet('{glob}', hive_partitioning = false, union_by_name = true)
        {'WHERE ' + ' AND '.join(where) if where else ''}""", params)
    return con


def _query(con, sql: str) -> tuple[list[str], list[tuple]]:
    cur = con.execute(sql)
    return [d[0] for d in cur.description], cur.fetchall()


def _write_csv(path: Path, cols: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([round(v, 6) if isinstance(v, float) else v for v in r])


def _pivot(rows: list[dict[str, Any]], key: str, value: str):
    import numpy as np

    xs = sorted({r[key] for r in rows})
    cats = [c for c in LABELS if any(r["category"] == c for r in rows)]
    m = np.zeros((len(cats), len(xs)))
    xi, ci = {x: i for i, x in enumerate(xs)}, {c: i for i, c in enumerate(cats)}
    for r in rows:
        if r["category"] in ci:
            m[ci[r["category"]], xi[r[key]]] = float(r[value] or 0)
    return xs, cats, m


def _stacked_area(ax, rows, value: str, title: str, legend: bool = True) -> None:
    xs, cats, m = _pivot(rows, "week", value)
    col = colors()
    ax.stackplot(xs, m * 100, labels=cats, colors=[col[c] for c in cats], alpha=0.9)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of " + ("tokens" if "tokens" in value else "requests"))
    ax.set_title(title)
    ax.margins(x=0)
    ax.tick_params(axis="x", labelrotation=30)
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
                  frameon=False)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _charts(out: Path, data: dict[str, tuple[list[str], list[tuple]]], by_model: list[dict[str, Any]] | None,
            top_models: int) -> list[tuple[str, Path]]:
    from . import need

    matplotlib = need("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def recs(name: str) -> list[dict[str, Any]]:
        cols, rows = data[name]
        return [dict(zip(cols, r, strict=True)) for r in rows]

    charts: list[tuple[str, Path]] = []
    weekly = recs("category_share_weekly")
    if weekly:
        for value, what in (("share_requests", "requests"), ("share_tokens", "tokens")):
            fig, ax = plt.subplots(figsize=(10, 4.8))
            _stacked_area(ax, weekly, value, f"Category share per week, by {what}")
            p = out / f"category_share_weekly_{what}.png"
            _save(fig, p)
            charts.append((f"Category share per week, by {what}", p))

    langs = recs("language_share")
    if langs:
        top = langs[:15]
        rest = sum(r["requests"] for r in langs[15:])
        names = [r["language"] for r in top] + (["(others)"] if rest else [])
        total = sum(r["requests"] for r in langs)
        vals = [r["requests"] / total * 100 for r in top] + ([rest / total * 100] if rest else [])
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
        bars = ax.barh(names[::-1], vals[::-1], color="#4c72b0")
        ax.bar_label(bars, fmt="%.1f%%", fontsize=8, padding=2)
        ax.set_xlabel("% of requests")
        ax.set_title("Language share (ISO 639-1; und = code/symbols only)")
        ax.set_xlim(0, max(vals) * 1.15)
        p = out / "language_share.png"
        _save(fig, p)
        charts.append(("Language share", p))

    mc = recs("model_category")
    if mc:
        counts: dict[str, int] = {}
        for r in mc:
            counts[r["model"]] = counts.get(r["model"], 0) + r["requests"]
        models = sorted(counts, key=lambda m: -counts[m])[:12]
        col = colors()
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(models) + 1.6))
        left = [0.0] * len(models)
        for cat in LABELS:
            share = [next((r["share"] * 100 for r in mc if r["model"] == m and r["category"] == cat), 0.0)
                     for m in models]
            if any(share):
                ax.barh(models[::-1], share[::-1], left=left[::-1], color=col[cat], label=cat)
                left = [a + b for a, b in zip(left, share, strict=True)]
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of the model's requests")
        ax.set_title("Category mix per model")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        p = out / "model_category.png"
        _save(fig, p)
        charts.append(("Category mix per model", p))

    pl = recs("prompt_length_by_category")
    if pl:
        col = colors()
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(pl) + 1.2))
        cats = [r["category"] for r in pl][::-1]
        med = [r["median_chars"] for r in pl][::-1]
        p90 = [r["p90_chars"] for r in pl][::-1]
        ax.barh(cats, med, color=[col.get(c, "grey") for c in cats], label="median")
        ax.scatter(p90, cats, marker="|", s=200, color="black", label="90th percentile")
        ax.set_xlabel("prompt length (characters classified)")
        ax.set_title("Prompt length by category")
        ax.legend(fontsize=8, loc="lower right")
        p = out / "prompt_length_by_category.png"
        _save(fig, p)
        charts.append(("Prompt length by category", p))

    cf = recs("confidence_by_category")
    if cf:
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(cf) + 1.2))
        cats = [r["category"] for r in cf][::-1]
        a = [r["confident"] for r in cf][::-1]
        b = [r["unclassified"] for r in cf][::-1]
        ax.barh(cats, a, color="#55a868", label="confident")
        ax.barh(cats, b, left=a, color="#c44e52", label="below threshold (unclassified)")
        ax.set_xlabel("requests")
        ax.set_title("Confident vs unclassified, by top category")
        ax.legend(fontsize=8, loc="lower right")
        p = out / "confidence_by_category.png"
        _save(fig, p)
        charts.append(("Confident vs unclassified", p))

    if by_model:
        counts = {}
        for r in by_model:
            counts[r["model"]] = counts.get(r["model"], 0) + r["requests"]
        models = sorted(counts, key=lambda m: -counts[m])[:top_models]
        ncol = 2
        nrow = -(-len(models) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(12, 3.2 * nrow), squeeze=False, sharey=True)
        for ax, m in zip(axes.flat, models, strict=False):
            _stacked_area(ax, [r for r in by_model if r["model"] == m], "share_requests",
                          f"{m} ({counts[m]} requests)", legend=False)
        for ax in list(axes.flat)[len(models):]:
            ax.set_visible(False)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   frameon=False)
        p = out / "category_share_weekly_by_model.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        charts.append(("Category share per week, per model", p))
    return charts


def _html_table(cols: list[str], rows: list[tuple], limit: int = 40) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r) + "</tr>" for r in rows[:limit])
    more = f"<p class=more>{len(rows) - limit} more rows in the CSV</p>" if len(rows) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def build_report(tagged: str, out_dir: str, *, since: str | None = None, until: str | None = None,
                 by: str | None = None, top_models: int = 6) -> list[Path]:
    """Write the CSV tables, PNG charts and ``report.html`` into ``out_dir``; returns the paths (HTML last)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = _connect(tagged, since, until)
    data = {name: _query(con, sql) for name, sql in TABLES.items()}
    if data["summary"][1][0][0] == 0:
        raise ValueError(f"{tagged}: no tagged rows in the window --since {since} --until {until}")
    written: list[Path] = []
    for name, (cols, rows) in data.items():
        p = out / f"{name}.csv"
        _write_csv(p, cols, rows)
        written.append(p)
    by_model = None
    if by == "model":
        cols, rows = _query(con, BY_MODEL)
        p = out / "category_share_weekly_by_model.csv"
        _write_csv(p, cols, rows)
        written.append(p)
        by_model = [dict(zip(cols, r, strict=True)) for r in rows]
    charts = _charts(out, data, by_model, top_models)
    written += [p for _, p in charts]
    cols, rows = data["summary"]
    s = dict(zip(cols, rows[0], strict=True))
    window = f"{since or 'start'} to {until or 'end'}"
    parts = [f"<h1>Prompt categories and languages</h1><p>{s['requests']:,} requests, "
             f"{int(s['tokens'] or 0):,} tokens, {s['first']} to {s['last']} (window: {html.escape(window)}); "
             f"{s['models']} models, {s['languages']} languages; {100 * (s['share_confident'] or 0):.1f}% "
             f"confident; tagged by {html.escape(str(s['model_versions']))}.</p>"]
    for title, p in charts:
        b64 = base64.b64encode(p.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,"
                     f"{b64}'>")
    for name, (cols, rows) in data.items():
        if name != "summary":
            parts.append(f"<h2>{name.replace('_', ' ')}</h2>{_html_table(cols, rows)}")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "img{max-width:100%}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}.more{color:#777;font-size:12px}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>prompt-tagger report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    rp = out / "report.html"
    rp.write_text(page, encoding="utf-8")
    written.append(rp)
    return written
