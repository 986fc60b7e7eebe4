"""``prompt-tagger kafka``: tag request records from one Kafka topic and publish one result record per input to another.

Records are what ``/v1/ingest`` takes per line (a JSON string, ``{"text": ...}``, ``{"request": {...}}`` or a
chat-completions body with ``messages``; metadata nested or top-level), parsed and validated by the same code, and
classified by ``Classifier.predict``. A result is the ``/v1/classify`` answer plus ``topic``/``partition``/``offset``
of its input; a bad record gets ``{"error": "...", "topic", "partition", "offset"}`` and the consumer goes on.
Results keep their input's key, so per-key order holds. faststream is imported only when the adapter is built.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .settings import Settings

if TYPE_CHECKING:
    from faststream import FastStream
    from faststream.kafka import KafkaBroker

    from classifier import Classifier

log = logging.getLogger("prompt_tagger.kafka")


class KafkaSettings(BaseSettings):
    """Every field can be set as ``PROMPT_TAGGER_KAFKA_<NAME>`` (e.g. ``PROMPT_TAGGER_KAFKA_INPUT_TOPIC``)."""

    model_config = SettingsConfigDict(env_prefix="PROMPT_TAGGER_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("localhost:9092", description="comma-separated host:port list")
    input_topic: str = Field("prompt-tagger.requests", description="topic of request records")
    output_topic: str = Field("prompt-tagger.tags", description="topic the results (and error records) go to")
    group_id: str = Field("prompt-tagger", description="consumer group")
    auto_offset_reset: str = Field("earliest", pattern="^(earliest|latest)$",
                                   description="where a new consumer group starts")
    batch_timeout_ms: int = Field(50, ge=0, description="longest the consumer waits to fill a batch")


def _where(rec: Any) -> dict[str, Any]:
    return {"topic": getattr(rec, "topic", None), "partition": getattr(rec, "partition", None),
            "offset": getattr(rec, "offset", None)}


def classify_records(clf: Classifier, records: list[Any], limit: int) -> list[dict[str, Any]]:
    """One result dict per record (aiokafka ``ConsumerRecord``-like: ``.value``), in order; never raises for a bad
    record. Parsing and validation are the service's (``/v1/ingest``'s); inference is ``Classifier.predict``."""
    from classifier.model import Tag

    from .app import _parse_line
    from .schemas import Item

    parsed: list[Item | str] = []
    for rec in records:
        value = rec.value
        if value is None:
            parsed.append("empty record (no value)")
        elif not isinstance(value, (bytes, bytearray)):
            parsed.append(f"record value is {type(value).__name__}, expected bytes")
        else:
            parsed.append(_parse_line(bytes(value) if len(value) <= limit else None, limit))
    good = [it for it in parsed if isinstance(it, Item)]
    tags: list[Tag] = clf.predict([it.model_text for it in good]) if good else []
    answers = iter(tags)
    out = []
    for rec, it in zip(records, parsed, strict=True):
        if isinstance(it, Item):
            d = next(answers).to_dict()
            if it.metadata and it.metadata.request_id is not None:
                d["request_id"] = it.metadata.request_id
        else:
            d = {"error": it.replace("line longer than", "record longer than")}
        d.update(_where(rec))
        out.append(d)
    return out


def create_kafka_app(settings: Settings | None = None, kafka: KafkaSettings | None = None,
                     classifier: Classifier | None = None,
                     broker: KafkaBroker | None = None) -> tuple[FastStream, KafkaBroker]:
    """The faststream app and its broker; ``classifier`` skips loading the model (tests inject the fake one)."""
    from faststream import Context, FastStream
    from faststream.kafka import KafkaBroker

    settings = settings or Settings()
    kafka = kafka or KafkaSettings()
    broker = broker or KafkaBroker([s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()])
    state: dict[str, Any] = {"clf": classifier}
    limit = settings.max_body_bytes
    publisher = broker.publisher(kafka.output_topic, description="one result or error record per input record")

    async def load_model() -> None:
        if state["clf"] is None:
            from classifier import Classifier

            state["clf"] = await asyncio.to_thread(Classifier.load, settings.model, threads=settings.threads or None)
        log.info("kafka: %s -> %s with model %s", kafka.input_topic, kafka.output_topic, state["clf"].version)

    @broker.subscriber(kafka.input_topic, group_id=kafka.group_id, batch=True, max_records=settings.max_batch_size,
                       batch_timeout_ms=kafka.batch_timeout_ms, auto_offset_reset=kafka.auto_offset_reset,
                       description="request records, as /v1/ingest lines")
    async def tag_records(msg: Any = Context("message")) -> None:  # noqa: B008 - faststream's DI
        raw = msg.raw_message
        records = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if state["clf"] is None:
            await load_model()
        try:
            results = await asyncio.to_thread(classify_records, state["clf"], records, limit)
        except Exception as exc:  # noqa: BLE001 - inference failed for the whole batch: answer each record
            log.exception("kafka: classifying %d records failed", len(records))
            results = [{"error": f"classification failed: {type(exc).__name__}: {exc}", **_where(r)}
                       for r in records]
        for rec, res in zip(records, results, strict=True):
            await publisher.publish(json.dumps(res, ensure_ascii=False).encode(), key=getattr(rec, "key", None),
                                    headers={"content-type": "application/json"})

    app = FastStream(broker, on_startup=[load_model])
    return app, broker


def run(settings: Settings, kafka: KafkaSettings) -> None:
    app, _ = create_kafka_app(settings, kafka)
    asyncio.run(app.run())
