"""A few Prometheus metrics in the text exposition format (version 0.0.4), kept in-process."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.values: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, *label_values: str, amount: float = 1) -> None:
        with self._lock:
            self.values[tuple(label_values)] += amount

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} counter"]
        for k, v in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labels, k)} {v:g}")
        return out


class Histogram:
    def __init__(self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.buckets, self.labels = name, doc, tuple(buckets), tuple(labels)
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def observe(self, value: float, *label_values: str) -> None:
        k = tuple(label_values)
        with self._lock:
            c = self.counts.setdefault(k, [0] * (len(self.buckets) + 1))
            c[bisect.bisect_left(self.buckets, value)] += 1
            self.sums[k] += value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        for k, counts in sorted(self.counts.items()):
            cum = 0
            for le, c in zip([*map(str, self.buckets), "+Inf"], counts, strict=True):
                cum += c
                le_label = 'le="' + le + '"'
                out.append(f"{self.name}_bucket{_labels(self.labels, k, le_label)} {cum}")
            out.append(f"{self.name}_sum{_labels(self.labels, k)} {self.sums[k]:g}")
            out.append(f"{self.name}_count{_labels(self.labels, k)} {cum}")
        return out


class Gauge:
    def __init__(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        self.name, self.doc, self.fn = name, doc, fn

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} gauge", f"{self.name} {self.fn():g}"]


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter("prompt_tagger_http_requests_total", "HTTP requests by route and status",
                                ("route", "status"))
        self.latency = Histogram("prompt_tagger_http_request_duration_seconds", "HTTP request latency",
                                 LATENCY_BUCKETS, ("route",))
        self.batch_size = Histogram("prompt_tagger_inference_batch_size", "texts per ONNX run", BATCH_BUCKETS)
        self.batch_seconds = Histogram("prompt_tagger_inference_batch_seconds", "seconds per ONNX run",
                                       LATENCY_BUCKETS)
        self.categories = Counter("prompt_tagger_classified_total", "items classified, by category and whether "
                                  "the score passed its threshold", ("category", "confident"))
        self.languages = Counter("prompt_tagger_language_total", "items classified, by language", ("language",))
        self.rejected = Counter("prompt_tagger_overload_rejections_total", "requests answered 503 (queue full)")
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, doc, fn))

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.latency, self.batch_size, self.batch_seconds, self.categories,
                  self.languages, self.rejected, *self.gauges):
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
