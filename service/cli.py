"""``prompt-tagger serve``: the HTTP service (registered by ``classifier.cli``)."""

from __future__ import annotations

import argparse


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .settings import Settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("model", args.model),
                                   ("db_path", args.db)) if v is not None}
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
                timeout_graceful_shutdown=settings.shutdown_timeout_s or None)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="HTTP service: classify request streams and keep live statistics "
                       "(settings: PROMPT_TAGGER_* environment variables)")
    s.add_argument("--host", help="default 127.0.0.1 (PROMPT_TAGGER_HOST)")
    s.add_argument("--port", type=int, help="default 8000 (PROMPT_TAGGER_PORT)")
    s.add_argument("--model", help="model folder (PROMPT_TAGGER_MODEL; default models/default)")
    s.add_argument("--db", help="SQLite statistics file (PROMPT_TAGGER_DB_PATH)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(fn=cmd_serve)
