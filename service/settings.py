"""Service configuration, read from ``PROMPT_TAGGER_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field can be set as ``PROMPT_TAGGER_<NAME>`` (e.g. ``PROMPT_TAGGER_API_KEY``)."""

    model_config = SettingsConfigDict(env_prefix="PROMPT_TAGGER_", extra="ignore")

    model: str | None = Field(None, description="model folder; default models/default")
    threads: int = Field(0, ge=0, description="ONNX intra-op threads; 0 lets onnxruntime decide")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: str | None = Field(None, description="when set, every route but /health and the dashboard shell "
                                "needs `Authorization: Bearer <key>`")
    db_path: str = Field("prompt_tagger_stats.sqlite3", description="SQLite statistics store (WAL mode)")
    store_text: bool = Field(False, description="also store the classified text (off: only labels and metadata)")
    store_batch_rows: int = Field(100, ge=1, description="rows per store transaction")
    store_flush_ms: int = Field(200, ge=1, description="longest a row waits before its transaction is written")
    max_batch_size: int = Field(64, ge=1, description="most texts in one ONNX run (micro-batch)")
    max_wait_ms: float = Field(25.0, ge=0, description="longest a text waits for others to join its micro-batch "
                                "(load bench: 25 ms gave 68% of in-process throughput vs 53% at 5 ms)")
    max_queue: int = Field(1024, ge=1, description="texts waiting for inference before new requests get 503")
    retry_after_s: int = Field(1, ge=1, description="Retry-After header on 503")
    max_body_bytes: int = Field(1_000_000, ge=1, description="request body limit (413); per line for /v1/ingest")
    max_batch_items: int = Field(256, ge=1, description="most items in one /v1/classify/batch call (422)")
    admin_key: str | None = Field(None, description="bearer key for /admin/* (model reload); when unset the "
                                  "API key is used, and with neither the admin routes answer 403")
    reload_watch_s: float = Field(0.0, ge=0, description="poll the model folder's manifest this often and reload "
                                  "when it changes (0: off; POST /admin/reload still works)")
    drift_days: float = Field(7.0, gt=0, description="default window of GET /v1/drift, in days")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="graceful shutdown: wait this long for open requests")
