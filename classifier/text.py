"""What the classifier reads: a plain string, or the system prompt plus the last user turn of a chat request."""

from __future__ import annotations

from typing import Any

MAX_CHARS = 20_000  # head + tail kept beyond this; the tokenizer window is far smaller anyway


class InputError(ValueError):
    """An item is neither a string nor an OpenAI-style chat request."""


def _content(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: [{"type": "text", "text": ...}, {"type": "image_url"...}]
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                if part.get("type", "text") == "text":
                    txt = part.get("text", "")
                    if not isinstance(txt, str):
                        raise InputError(f"{where}[{i}].text: expected a string, got {type(txt).__name__}")
                    parts.append(txt)
            else:
                raise InputError(f"{where}[{i}]: expected a content part object, got {type(part).__name__}")
        return "\n".join(parts)
    raise InputError(f"{where}: expected a string or a list of content parts, got {type(value).__name__}")


def clean(text: str) -> str:
    """Drop lone surrogates (they cannot be encoded) and keep head + tail of very long texts."""
    text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(text) else text
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + "\n\u2026\n" + text[-half:]
    return text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def from_request(req: dict[str, Any]) -> str:
    """System prompt(s) + last user turn of an OpenAI chat-completions body."""
    msgs = req.get("messages")
    if not isinstance(msgs, list):
        raise InputError(f"request.messages: expected a list of messages, got {type(msgs).__name__}")
    system: list[str] = []
    last_user: str | None = None
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise InputError(f"request.messages[{i}]: expected an object, got {type(m).__name__}")
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_content(m.get("content"), f"request.messages[{i}].content"))
        elif role == "user":
            last_user = _content(m.get("content"), f"request.messages[{i}].content")
    parts = [s for s in system if s.strip()]
    if last_user is not None and last_user.strip():
        parts.append(last_user)
    return "\n\n".join(parts)


def to_text(item: Any) -> str:
    """The text the model classifies for one input item (string or chat request dict)."""
    if isinstance(item, str):
        return clean(item)
    if isinstance(item, dict):
        if "messages" in item:
            return clean(from_request(item))
        if "request" in item and isinstance(item["request"], dict):
            return clean(from_request(item["request"]))
        if "text" in item:
            if not isinstance(item["text"], str):
                raise InputError(f"text: expected a string, got {type(item['text']).__name__}")
            return clean(item["text"])
        raise InputError("expected a string, {'text': ...}, or a chat request with 'messages'; got an object "
                         f"with keys {sorted(item)[:8]}")
    raise InputError(f"expected a string or a chat request object, got {type(item).__name__}")
