"""Shared helpers for the service tests: a scriptable stub classifier and a store wait."""

from __future__ import annotations

import threading
import time

from classifier import Tag
from classifier.labels import LABELS


class StubClassifier:
    """Category from the text's first word (``"legal ..."`` -> legal); a text ending in ``?!`` is not confident.

    ``gate`` (a threading.Event) holds every inference until it is set; ``calls`` records batch sizes.
    """

    labels = list(LABELS)
    version = "stub-1"
    manifest = {"schema_version": 1, "version": "stub-1", "labels": list(LABELS)}

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.calls: list[int] = []

    def predict(self, texts: list[str]) -> list[Tag]:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append(len(texts))
        out = []
        for t in texts:
            first = t.split()[0] if t.split() else "other"
            cat = first if first in LABELS else "other"
            scores = {lab: (0.9 if lab == cat else 0.01) for lab in LABELS}
            out.append(Tag(cat, 0.9, not t.endswith("?!"), scores, "en", 0.99, self.version))
        return out


def wait_written(app, n: int, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while app.state.store.stats.written < n:
        if time.time() > deadline:
            raise AssertionError(f"store wrote {app.state.store.stats.written} rows, expected {n}")
        time.sleep(0.01)
