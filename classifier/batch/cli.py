"""``prompt-tagger tag`` (files/dirs/globs of JSONL, CSV, Parquet -> Parquet by day or JSONL) and
``prompt-tagger report``; registered into the main command by ``classifier.cli``."""

from __future__ import annotations

import argparse
import sys

FIELD_FLAGS = ("text", "request", "timestamp", "model", "request_id", "prompt_tokens", "completion_tokens")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("tag", help="tag logs (JSONL[.gz], CSV, Parquet; files, dirs, globs) into Parquet "
                        "by day (-o DIR) or JSONL (-o FILE.jsonl / stdout)")
    s.add_argument("input", nargs="+", help="files, directories or globs; s3://… with --engine ray; - for stdin")
    s.add_argument("-o", "--output", help="DIR for Parquet partitioned by day, FILE.jsonl, or - / omitted: stdout")
    s.add_argument("--model", help="model folder (default models/default)")
    s.add_argument("--scores", action="store_true", help="include all 13 scores")
    s.add_argument("--keep-text", action="store_true", help="include the classified text in the output")
    s.add_argument("--fields", metavar="JSON", help='field mapping file, e.g. {"text": "prompt", "timestamp": "ts"}')
    for f in FIELD_FLAGS:
        s.add_argument(f"--{f.replace('_', '-')}-field", dest=f"field_{f}", metavar="NAME",
                       help=f"column holding the {f.replace('_', ' ')} (default {f!r}; dotted paths reach into "
                       "objects)")
    s.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="input format (default: from the name)")
    s.add_argument("--engine", choices=["local", "ray"], default="local")
    s.add_argument("--ray-address", help="Ray cluster address (default $RAY_ADDRESS, else a local Ray)")
    s.add_argument("--workers", type=int, help="processes / Ray actors (default: every core)")
    s.add_argument("--threads", type=int, default=1, help="ONNX threads per worker (default 1)")
    s.add_argument("--chunk-rows", type=int, default=2000, help="rows per chunk: the unit of memory and resume")
    s.add_argument("--overwrite", action="store_true", help="discard an earlier job in the output instead of "
                   "resuming it")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--log-every", type=float, default=10.0, help="seconds between progress lines off a terminal")
    s.set_defaults(fn=cmd_tag)

    r = sub.add_parser("report", help="category / language distribution report over `tag -o DIR` output")
    r.add_argument("tagged", help="the Parquet directory written by `prompt-tagger tag -o DIR`")
    r.add_argument("-o", "--output", default="reports/batch", help="report folder (CSV, PNG, report.html)")
    r.add_argument("--since", help="first day included (YYYY-MM-DD)")
    r.add_argument("--until", help="last day included (YYYY-MM-DD)")
    r.add_argument("--by", choices=["model"], help="also break the weekly shares down per model")
    r.add_argument("--top-models", type=int, default=6)
    r.set_defaults(fn=cmd_report)


def cmd_tag(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from .engine import output_mode, run_local
    from .fields import FieldMap
    from .tagging import JobSpec

    fields = FieldMap.load(args.fields, {f: getattr(args, f"field_{f}") for f in FIELD_FLAGS})
    inputs = list(args.input)
    tmp = None
    if inputs == ["-"]:  # stdin: spool it so chunks can be re-read on resume
        tmp = tempfile.NamedTemporaryFile(suffix=f".{args.format or 'jsonl'}", delete=False)
        tmp.write(sys.stdin.buffer.read())
        tmp.close()
        inputs = [tmp.name]
    out = None if args.output in (None, "-") else args.output
    spec = JobSpec(model=args.model, fields=fields, out=out, mode=output_mode(out), threads=args.threads,
                   keep_text=args.keep_text, scores=args.scores)
    kw = dict(chunk_rows=args.chunk_rows, workers=args.workers, fmt=args.format, overwrite=args.overwrite)
    try:
        if args.engine == "ray":
            from .ray_engine import run_ray

            summary = run_ray(inputs, spec, address=args.ray_address, **kw)
        else:
            summary = run_local(inputs, spec, progress=not args.no_progress, log_every=args.log_every, **kw)
    except ValueError as exc:
        print(f"prompt-tagger tag: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    print(summary.line(), file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    try:
        paths = build_report(args.tagged, args.output, since=args.since, until=args.until, by=args.by,
                             top_models=args.top_models)
    except ValueError as exc:
        print(f"prompt-tagger report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} files to {args.output}; open {paths[-1]}", file=sys.stderr)
    return 0
