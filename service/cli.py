"""``prompt-tagger serve``: the HTTP service; ``prompt-tagger kafka``: the Kafka adapter (registered by
``classifier.cli``)."""

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


def cmd_kafka(args: argparse.Namespace) -> int:
    import logging

    from .kafka import KafkaSettings, run
    from .settings import Settings

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(**({"model": args.model} if args.model else {}))
    overrides = {k: v for k, v in (("bootstrap_servers", args.bootstrap_servers), ("input_topic", args.input_topic),
                                   ("output_topic", args.output_topic), ("group_id", args.group_id))
                 if v is not None}
    run(settings, KafkaSettings(**overrides))
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

    k = sub.add_parser("kafka", help="Kafka adapter: tag request records from a topic, publish one result (or error) "
                       "record per input to another (needs the `service` extra: faststream[kafka])")
    k.add_argument("--bootstrap-servers", help="host:port[,host:port] (PROMPT_TAGGER_KAFKA_BOOTSTRAP_SERVERS; "
                   "default localhost:9092)")
    k.add_argument("--input-topic", help="PROMPT_TAGGER_KAFKA_INPUT_TOPIC; default prompt-tagger.requests")
    k.add_argument("--output-topic", help="PROMPT_TAGGER_KAFKA_OUTPUT_TOPIC; default prompt-tagger.tags")
    k.add_argument("--group-id", help="consumer group (PROMPT_TAGGER_KAFKA_GROUP_ID; default prompt-tagger)")
    k.add_argument("--model", help="model folder (PROMPT_TAGGER_MODEL; default models/default)")
    k.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    k.set_defaults(fn=cmd_kafka)
