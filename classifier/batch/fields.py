"""Where the text, timestamp, model, request id and token counts live in an input row, and turning one raw row
into what the engine tags. Bad rows raise :class:`RowError` with a reason; they never stop a job."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..text import InputError, clean, from_request


class RowError(ValueError):
    """One input row cannot be tagged; the message is the reason written to errors.jsonl."""


@dataclass(frozen=True)
class FieldMap:
    """Input column names; a dotted name (``usage.prompt_tokens``) reaches into nested objects."""

    text: str = "text"
    request: str = "request"
    timestamp: str = "timestamp"
    model: str = "model"
    request_id: str = "request_id"
    prompt_tokens: str = "prompt_tokens"
    completion_tokens: str = "completion_tokens"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldMap:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown field mapping keys {unknown}; valid keys are {sorted(names)}")
        bad = {k: v for k, v in d.items() if not isinstance(v, str) or not v}
        if bad:
            raise ValueError(f"field mapping values must be non-empty column names, got {bad}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict[str, str | None]) -> FieldMap:
        """A JSON config file (``{"text": "prompt", "timestamp": "ts"}``) with command-line overrides on top."""
        d: dict[str, Any] = json.loads(Path(path).read_text()) if path else {}
        d.update({k: v for k, v in overrides.items() if v})
        return cls.from_dict(d)

    def columns(self) -> set[str]:
        """Top-level column names the mapping can read (plus the OpenAI shapes the defaults accept)."""
        return {v.split(".")[0] for v in self.to_dict().values()} | {"messages", "id"}


_MISSING = object()


def get(row: dict[str, Any], name: str) -> Any:
    if name in row:
        return row[name]
    cur: Any = row
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _present(v: Any) -> bool:
    return v is not _MISSING and v is not None and not (isinstance(v, str) and v == "")


def parse_timestamp(v: Any, name: str) -> datetime | None:
    if not _present(v):
        return None
    if isinstance(v, datetime):
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
    if isinstance(v, bool):
        raise RowError(f"{name}: expected an ISO-8601 string or epoch seconds/milliseconds, got bool")
    if isinstance(v, str):
        s = v.strip()
        try:
            return parse_timestamp(float(s), name)
        except ValueError:
            pass
        try:
            ts = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise RowError(f"{name}: expected an ISO-8601 timestamp or epoch seconds, got {v[:40]!r}") from None
        return parse_timestamp(ts, name)
    if isinstance(v, (int, float)):
        x = float(v)
        if x > 1e14:
            x /= 1e6  # microseconds
        elif x > 1e11:
            x /= 1e3  # milliseconds
        try:
            return datetime.fromtimestamp(x, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise RowError(f"{name}: epoch value {v!r} is out of range") from None
    raise RowError(f"{name}: expected an ISO-8601 string or epoch seconds, got {type(v).__name__}")


def parse_count(v: Any, name: str) -> int | None:
    if not _present(v):
        return None
    if isinstance(v, bool):
        raise RowError(f"{name}: expected a non-negative integer, got bool")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            raise RowError(f"{name}: expected a non-negative integer, got {v[:40]!r}") from None
    if not isinstance(v, int) or v < 0:
        raise RowError(f"{name}: expected a non-negative integer, got {v!r}")
    return v


def _str_or_none(v: Any, name: str) -> str | None:
    if not _present(v):
        return None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise RowError(f"{name}: expected a string, got {type(v).__name__}")


def _request(v: Any, name: str) -> dict[str, Any]:
    if isinstance(v, str):  # CSV / Parquet string column holding the JSON body
        try:
            v = json.loads(v)
        except json.JSONDecodeError as exc:
            raise RowError(f"{name}: not a JSON chat request: {exc.msg} at column {exc.colno}") from None
    if not isinstance(v, dict):
        raise RowError(f"{name}: expected an OpenAI chat request object, got {type(v).__name__}")
    return v


def normalize(row: Any, fm: FieldMap) -> tuple[str, dict[str, Any]]:
    """(text to classify, metadata columns) for one parsed row; raises RowError."""
    if isinstance(row, str):
        return clean(row), {}
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object or string, got {type(row).__name__}")
    text = get(row, fm.text)
    req = get(row, fm.request)
    try:
        if text is not _MISSING and text is not None:
            if not isinstance(text, str):
                raise RowError(f"{fm.text}: expected a string, got {type(text).__name__}")
            out = clean(text)
            body = None
        elif req is not _MISSING and req is not None:
            body = _request(req, fm.request)
            out = clean(from_request(body))
        elif "messages" in row:
            body = row
            out = clean(from_request(row))
        else:
            raise RowError(f"expected a {fm.text!r} field (string), a {fm.request!r} field (OpenAI chat body) or "
                           f"'messages'; got keys {sorted(map(str, row))[:8]}; map other names with --text-field / "
                           "--request-field")
    except InputError as exc:
        raise RowError(str(exc)) from None
    model = get(row, fm.model)
    if not _present(model) and body is not None:
        model = body.get("model")
    rid = get(row, fm.request_id)
    if not _present(rid) and fm.request_id == "request_id":
        rid = row.get("id")
    meta = {
        "request_id": _str_or_none(rid, fm.request_id),
        "timestamp": parse_timestamp(get(row, fm.timestamp), fm.timestamp),
        "model": _str_or_none(model, fm.model),
        "prompt_tokens": parse_count(get(row, fm.prompt_tokens), fm.prompt_tokens),
        "completion_tokens": parse_count(get(row, fm.completion_tokens), fm.completion_tokens),
    }
    return out, meta
