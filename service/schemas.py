"""Request and response bodies. Unknown fields are refused (422) so typos do not pass silently."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from classifier.text import InputError, clean, from_request

META_FIELDS = ("request_id", "model", "prompt_tokens", "completion_tokens", "timestamp", "user_region")


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(None, max_length=256)
    model: str | None = Field(None, max_length=256, description="the LLM the request was sent to")
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)
    timestamp: datetime | None = Field(None, description="ISO 8601 or Unix seconds; default: when received")
    user_region: str | None = Field(None, max_length=64)

    def unix_time(self, default: float) -> float:
        if self.timestamp is None:
            return default
        ts = self.timestamp if self.timestamp.tzinfo else self.timestamp.replace(tzinfo=timezone.utc)
        return ts.timestamp()


class Item(BaseModel):
    """One prompt: ``{"text": ...}`` or ``{"request": <OpenAI chat-completions body>}``, with optional metadata."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Translate to German: good morning", "metadata": {"model": "gpt-4o", "prompt_tokens": 9}},
        {"request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "fix this TypeError"}]}},
    ]})

    text: str | None = Field(None, description="long texts are truncated by the classifier, not rejected")
    request: dict[str, Any] | None = None
    metadata: Metadata | None = None
    _model_text: str = PrivateAttr("")

    @model_validator(mode="after")
    def _one_input(self) -> Item:
        if (self.text is None) == (self.request is None):
            raise ValueError("give exactly one of `text` (a string) or `request` (a chat-completions body)")
        try:
            self._model_text = clean(self.text) if self.text is not None else clean(from_request(self.request))
        except InputError as exc:
            raise ValueError(f"request.{str(exc).removeprefix('request.')}") from exc
        return self

    @property
    def model_text(self) -> str:
        return self._model_text


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(..., min_length=1, description="up to PROMPT_TAGGER_MAX_BATCH_ITEMS (256) items")


class TagOut(BaseModel):
    category: str
    confidence: float
    confident: bool = Field(description="the top score passed its label's threshold; if not, it counts as "
                            "`unclassified` in the statistics")
    scores: dict[str, float]
    language: str
    language_confidence: float
    model_version: str
    request_id: str | None = None


class BatchOut(BaseModel):
    items: list[TagOut]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(..., description="the correct category")
    request_id: str | None = Field(None, max_length=256)
    text: str | None = Field(None, max_length=100_000)
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _target(self) -> FeedbackIn:
        if self.request_id is None and self.text is None:
            raise ValueError("give `request_id` (of a classified request) or `text`, or both")
        return self


def record_to_item(obj: Any) -> Item:
    """An /v1/ingest line: a string, ``{"text"|"request"|"messages": ..}``; metadata nested or top-level."""
    if isinstance(obj, str):
        return Item(text=obj)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object or string, got {type(obj).__name__}")
    body: dict[str, Any] = {}
    if "text" in obj:
        body["text"] = obj["text"]
    elif "request" in obj:
        body["request"] = obj["request"]
    elif "messages" in obj:
        body["request"] = obj
    else:
        raise ValueError('expected {"text": ...}, {"request": {...}} or a chat request with "messages"; got keys '
                         f"{sorted(obj)[:8]}")
    meta = obj.get("metadata")
    if meta is None:
        meta = {k: obj[k] for k in META_FIELDS if k in obj}
        if "request_id" not in meta and isinstance(obj.get("id"), str):
            meta["request_id"] = obj["id"]
    body["metadata"] = meta
    return Item.model_validate(body)
