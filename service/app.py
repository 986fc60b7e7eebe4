"""The FastAPI application: routes, lifespan (model, batcher, store), auth, body limits and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError

from classifier import Classifier, Tag, drift
from classifier.model import default_model_path

from .batching import MicroBatcher, Overloaded
from .metrics import Metrics
from .middleware import BodyLimit, MetricsMiddleware
from .schemas import BatchOut, BatchRequest, FeedbackIn, Item, TagOut, record_to_item
from .settings import Settings
from .store import GROUPS, StatsStore

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("prompt_tagger.service")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    s: Settings = app.state.settings
    if app.state.classifier is None:
        app.state.classifier = Classifier.load(s.model, threads=s.threads or None)
    clf: Classifier = app.state.classifier
    metrics: Metrics = app.state.metrics

    def on_batch(n: int, seconds: float) -> None:
        metrics.batch_size.observe(n)
        metrics.batch_seconds.observe(seconds)

    store = StatsStore(s.db_path, batch_rows=s.store_batch_rows, flush_ms=s.store_flush_ms)
    batcher = MicroBatcher(clf.predict, max_batch=s.max_batch_size, max_wait_ms=s.max_wait_ms,
                           max_queue=s.max_queue, on_batch=on_batch)
    metrics.gauge("prompt_tagger_queue_depth", "texts waiting for or in inference", lambda: batcher.pending)
    metrics.gauge("prompt_tagger_store_backlog", "rows accepted but not yet written", lambda: store.backlog)
    metrics.gauge("prompt_tagger_store_rows_written_total", "rows written to the store by this process",
                  lambda: store.stats.written)
    app.state.store, app.state.batcher = store, batcher
    app.state.started = time.time()
    app.state.reload_lock = asyncio.Lock()
    await batcher.start()
    watch = asyncio.create_task(watch_model(app, s.reload_watch_s)) if s.reload_watch_s else None
    try:
        yield
    finally:  # the server has finished every open request: drain inference, then write every row
        if watch is not None:
            watch.cancel()
        await batcher.stop()
        await asyncio.to_thread(store.close)


# -- dependencies ---------------------------------------------------------------------------------------------
def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_classifier(request: Request) -> Classifier:
    return request.app.state.classifier


def get_store(request: Request) -> StatsStore:
    return request.app.state.store


def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    key = request.app.state.settings.api_key
    if not key:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key: send `Authorization: Bearer <key>` "
                            "(the key is PROMPT_TAGGER_API_KEY)", headers={"WWW-Authenticate": "Bearer"})


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    s: Settings = request.app.state.settings
    key = s.admin_key or s.api_key
    if not key:
        raise HTTPException(403, "admin routes are off: set PROMPT_TAGGER_ADMIN_KEY (or PROMPT_TAGGER_API_KEY)")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
        raise HTTPException(401, "missing or wrong admin key: send `Authorization: Bearer <key>` (the key is "
                            "PROMPT_TAGGER_ADMIN_KEY, or PROMPT_TAGGER_API_KEY when that is unset)",
                            headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClassifierDep = Annotated[Classifier, Depends(get_classifier)]
StoreDep = Annotated[StatsStore, Depends(get_store)]


def invalid(loc: list[Any], msg: str, typ: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": typ}])


# -- classification ---------------------------------------------------------------------------------------
async def classify_items(request: Request, items: list[Item], source: str) -> list[dict[str, Any]]:
    """Run items through the micro-batcher, hand their rows to the store, and return the response dicts."""
    app = request.app
    try:
        tags: list[Tag] = await app.state.batcher.submit([it.model_text for it in items])
    except Overloaded as exc:
        app.state.metrics.rejected.inc()
        raise HTTPException(503, f"overloaded ({exc}); retry later",
                            headers={"Retry-After": str(app.state.settings.retry_after_s)}) from exc
    return record(app, items, tags, source)


def record(app: FastAPI, items: list[Item], tags: list[Tag], source: str) -> list[dict[str, Any]]:
    now = time.time()
    keep_text = app.state.settings.store_text
    metrics: Metrics = app.state.metrics
    rows, out = [], []
    for it, tag in zip(items, tags, strict=True):
        meta = it.metadata
        rows.append({
            "ts": meta.unix_time(now) if meta else now, "request_id": meta and meta.request_id,
            "model": meta and meta.model, "category": tag.category, "confidence": tag.confidence,
            "confident": int(tag.confident), "language": tag.language,
            "prompt_tokens": meta and meta.prompt_tokens, "completion_tokens": meta and meta.completion_tokens,
            "user_region": meta and meta.user_region, "model_version": tag.model_version, "source": source,
            "text": it.model_text if keep_text else None,
        })
        metrics.categories.inc(tag.category, str(tag.confident).lower())
        metrics.languages.inc(tag.language)
        d = tag.to_dict()
        if meta and meta.request_id is not None:
            d["request_id"] = meta.request_id
        out.append(d)
    app.state.store.add(rows)
    return out


router = APIRouter(dependencies=[Depends(require_key)])


@router.post("/v1/classify", response_model=TagOut, tags=["classify"])
async def classify(item: Item, request: Request) -> JSONResponse:
    """Classify one prompt: ``{"text": ...}`` or ``{"request": <chat-completions body>}``."""
    return JSONResponse((await classify_items(request, [item], "classify"))[0])


@router.post("/v1/classify/batch", response_model=BatchOut, tags=["classify"])
async def classify_batch(body: BatchRequest, request: Request, settings: SettingsDep) -> JSONResponse:
    """Classify up to ``PROMPT_TAGGER_MAX_BATCH_ITEMS`` items in one call; results keep the input order."""
    if len(body.items) > settings.max_batch_items:
        raise invalid(["body", "items"], f"at most {settings.max_batch_items} items per call, got "
                      f"{len(body.items)}; split the batch", "too_long")
    return JSONResponse({"items": await classify_items(request, body.items, "batch")})


class NDJSONStream(StreamingResponse):
    """Streams without a concurrent disconnect listener: the route reads the request body while it answers."""

    media_type = "application/x-ndjson"

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        await self.stream_response(send)


async def _lines(request: Request, limit: int) -> AsyncIterator[list[tuple[int, bytes | None]]]:
    """Complete lines as they arrive, in groups; a line longer than ``limit`` becomes ``None``."""
    buf, n, skipping = b"", 0, False
    async for chunk in request.stream():
        buf += chunk
        *complete, buf = buf.split(b"\n")
        out: list[tuple[int, bytes | None]] = []
        for raw in complete:
            n += 1
            if skipping:
                out.append((n, None))
                skipping = False
            elif raw.strip():
                out.append((n, raw if len(raw) <= limit else None))
        if len(buf) > limit and not skipping:
            skipping, buf = True, b""
        elif skipping:
            buf = b""
        if out:
            yield out
    if skipping:
        yield [(n + 1, None)]
    elif buf.strip():
        yield [(n + 1, buf if len(buf) <= limit else None)]


def _parse_line(raw: bytes | None, limit: int) -> Item | str:
    if raw is None:
        return f"line longer than {limit} bytes (PROMPT_TAGGER_MAX_BODY_BYTES)"
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at column {exc.colno}"
    try:
        return record_to_item(obj)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
    except ValueError as exc:
        return str(exc)


@router.post("/v1/ingest", tags=["classify"], response_class=NDJSONStream,
             openapi_extra={"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}})
async def ingest(request: Request, settings: SettingsDep) -> NDJSONStream:
    """A stream of NDJSON records in, one NDJSON result per non-empty line out, in order, as they are classified.

    A bad line answers ``{"line": n, "error": "..."}`` and the stream goes on. When the queue is full the stream
    waits (back-pressure) instead of failing.
    """
    limit = settings.max_body_bytes
    batcher: MicroBatcher = request.app.state.batcher

    async def results() -> AsyncIterator[bytes]:
        async for group in _lines(request, limit):
            parsed = [(n, _parse_line(raw, limit)) for n, raw in group]
            for s in range(0, len(parsed), settings.max_batch_size):
                part = parsed[s : s + settings.max_batch_size]
                good = [(n, it) for n, it in part if isinstance(it, Item)]
                tags: list[Tag] = []
                while good:
                    try:
                        tags = await batcher.submit([it.model_text for _, it in good])
                        break
                    except Overloaded:
                        await asyncio.sleep(0.05)
                answers = record(request.app, [it for _, it in good], tags, "ingest")
                done = dict(zip([n for n, _ in good], answers, strict=True))
                lines = []
                for n, it in part:
                    rec = {"line": n, **done[n]} if n in done else {"line": n, "error": it}
                    lines.append(json.dumps(rec, ensure_ascii=False))
                yield ("\n".join(lines) + "\n").encode()

    return NDJSONStream(results())


@router.get("/v1/stats", tags=["statistics"])
async def stats(
    store: StoreDep,
    bucket: Literal["day", "week", "all"] = "week",
    group_by: Annotated[str, Query(description="category, language, model, or a comma pair such as "
                                   "`model,category`")] = "category",
    weight: Literal["requests", "tokens"] = "requests",
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Counts and shares per time bucket. Not-confident requests are counted as ``unclassified`` and left out of
    the share denominators (``total``)."""
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if not groups or bad or len(set(groups)) != len(groups):
        raise invalid(["query", "group_by"], f"expected one or more distinct of {sorted(GROUPS)} separated by "
                      f"commas, got {group_by!r}")

    def unix(d: datetime | None) -> float | None:
        return None if d is None else (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()

    return await asyncio.to_thread(store.stats_query, bucket=bucket, group_by=groups, weight=weight,
                                   start=unix(start), end=unix(end))


@router.post("/v1/feedback", status_code=201, tags=["feedback"])
async def feedback(body: FeedbackIn, clf: ClassifierDep, store: StoreDep) -> dict[str, Any]:
    """Store a corrected label for a ``request_id`` or a text, for retraining."""
    if body.label not in clf.labels:
        raise invalid(["body", "label"], f"expected one of {clf.labels}, got {body.label!r}")
    row = body.model_dump()
    row["model_version"] = clf.version
    if body.request_id is not None:
        seen = await asyncio.to_thread(store.lookup, body.request_id)
        if seen:
            row["predicted"], row["model_version"] = seen["category"], seen["model_version"]
            row["text"] = row["text"] if row["text"] is not None else seen["text"]
    fid = await asyncio.to_thread(store.add_feedback, row)
    return {"id": fid, "stored": True, "predicted": row.get("predicted")}


@router.get("/version", tags=["service"])
async def version(clf: ClassifierDep) -> dict[str, Any]:
    """The loaded model's manifest."""
    return clf.manifest


@router.get("/metrics", response_class=PlainTextResponse, tags=["service"])
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format."""
    return PlainTextResponse(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/live", tags=["statistics"])
async def live(request: Request, clf: ClassifierDep) -> dict[str, Any]:
    """Counters for the dashboard (this process, since it started)."""
    m: Metrics = request.app.state.metrics
    by_cat = m.categories.values
    return {
        "classified": sum(by_cat.values()),
        "unclassified": sum(v for (_, conf), v in by_cat.items() if conf == "false"),
        "languages": len(m.languages.values),
        "queue_depth": request.app.state.batcher.pending,
        "rows_written": request.app.state.store.stats.written,
        "rejected": sum(m.rejected.values.values()),
        "uptime_s": round(time.time() - request.app.state.started, 1),
        "model_version": clf.version,
    }


@router.get("/v1/drift", tags=["statistics"])
async def drift_report(request: Request, clf: ClassifierDep, store: StoreDep, settings: SettingsDep,
                       days: Annotated[float | None, Query(gt=0, le=366)] = None,
                       all_versions: bool = False) -> dict[str, Any]:
    """Recent traffic vs the training data: unconfident share, PSI of the category mix (vs the training mix and vs
    the window before), and the labels whose mean confidence fell most. Counts only the served model's rows unless
    ``all_versions``."""
    span = (days or settings.drift_days) * 86400
    now = time.time()
    version = None if all_versions else clf.version
    cur = await asyncio.to_thread(store.drift_counts, now - span, now + 1, version)
    prev = await asyncio.to_thread(store.drift_counts, now - 2 * span, now - span, version)
    out = drift.report(cur, clf.manifest, prev or None)
    out["window"] = {"days": span / 86400, "start": now - span, "end": now, "model_version": version or "all"}
    return out


# -- hot reload -----------------------------------------------------------------------------------------------
def served_path(app: FastAPI) -> Path:
    s: Settings = app.state.settings
    return Path(s.model) if s.model else default_model_path()


async def reload_model(app: FastAPI) -> dict[str, Any]:
    """Load the served folder again and swap it in: new batches use it, the running batch ends on the old one."""
    async with app.state.reload_lock:
        old: Classifier = app.state.classifier
        t0 = time.perf_counter()
        s: Settings = app.state.settings
        new = await asyncio.to_thread(Classifier.load, served_path(app), threads=s.threads or None)
        app.state.batcher.swap(new.predict)
        app.state.classifier = new
        secs = round(time.perf_counter() - t0, 2)
        log.info("reloaded model %s -> %s in %.2fs", old.version, new.version, secs)
        return {"previous": old.version, "version": new.version, "labels": new.labels, "load_seconds": secs}


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path / "manifest.json")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


async def watch_model(app: FastAPI, every_s: float) -> None:
    """Reload when the served folder's manifest changes (promotion swaps the folder, so its inode changes)."""
    path = served_path(app)
    seen = _signature(path)
    while True:
        await asyncio.sleep(every_s)
        sig = _signature(path)
        if sig is None or sig == seen:
            continue
        try:
            version = json.loads((path / "manifest.json").read_text()).get("version")
            if version != app.state.classifier.version:
                await reload_model(app)
            seen = sig
        except Exception:  # noqa: BLE001 - a half-copied or bad model: keep serving the old one, try again
            log.exception("model reload from %s failed; still serving %s", path, app.state.classifier.version)


admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@admin.post("/reload", tags=["admin"])
async def admin_reload(request: Request) -> dict[str, Any]:
    """Load the served model folder again (after ``prompt-tagger models promote``) and swap it in atomically:
    requests being inferred finish on the old model, later ones use the new one, none fail."""
    from classifier.model import ModelError

    try:
        return await reload_model(request.app)
    except (ModelError, OSError, ValueError) as exc:
        raise HTTPException(409, f"reload failed, still serving {request.app.state.classifier.version}: "
                            f"{exc}") from exc


public = APIRouter()


@public.get("/health", tags=["service"])
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "model_version": request.app.state.classifier.version}


@public.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The dashboard shell holds no data; its script calls the API (with the key from the URL's #key=...)."""
    return FileResponse(STATIC / "dashboard.html", media_type="text/html")


@public.get("/static/dashboard.js", include_in_schema=False)
async def dashboard_js() -> FileResponse:
    return FileResponse(STATIC / "dashboard.js", media_type="text/javascript")


def create_app(settings: Settings | None = None, classifier: Classifier | None = None) -> FastAPI:
    """The app; ``classifier`` skips loading (tests inject a fake one)."""
    settings = settings or Settings()
    app = FastAPI(title="prompt-tagger", version="0.1.0", lifespan=lifespan,
                  description="Label LLM requests into 13 usage categories and keep live distribution statistics.")
    app.state.settings, app.state.classifier, app.state.metrics = settings, classifier, Metrics()
    app.include_router(router)
    app.include_router(admin)
    app.include_router(public)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, exempt=("/v1/ingest",))
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
