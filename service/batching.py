"""Micro-batching: concurrent requests share one ONNX run, which runs on a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Overloaded(RuntimeError):
    """The inference queue is full; the caller should answer 503 with Retry-After."""


class MicroBatcher:
    """Queue texts from many requests, run them ``max_batch`` at a time through ``predict``.

    Admission is all-or-nothing per call: a request whose texts do not fit in ``max_queue`` is refused with
    :class:`Overloaded` instead of growing memory. One inference runs at a time; the next batch fills while it runs.
    """

    def __init__(self, predict: Callable[[list[str]], list[Any]], *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, on_batch: Callable[[int, float], None] | None = None) -> None:
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._jobs: collections.deque[tuple[list[str], asyncio.Future]] = collections.deque()
        self.pending = 0  # texts queued or being inferred
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def swap(self, predict: Callable[[list[str]], list[Any]]) -> None:
        """Send later batches to ``predict``; the batch running now finishes on the old one (one worker)."""
        self._predict = predict

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish every queued job, then stop the worker."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._pool.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        texts = list(texts)
        if not texts:
            return []
        if self._closing:
            raise Overloaded("shutting down")
        if self.pending and self.pending + len(texts) > self.max_queue:  # an oversize job alone is let in
            raise Overloaded(f"{self.pending} texts queued, limit {self.max_queue}")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._jobs.append((texts, fut))
        self.pending += len(texts)
        self._wake.set()
        return await fut

    def _take(self) -> list[tuple[list[str], asyncio.Future]]:
        batch, n = [], 0
        while self._jobs and (not batch or n + len(self._jobs[0][0]) <= self.max_batch):
            job = self._jobs.popleft()
            batch.append(job)
            n += len(job[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            queued = sum(len(t) for t, _ in self._jobs)
            if queued < self.max_batch and self.max_wait > 0 and not self._closing:
                deadline = loop.time() + self.max_wait
                while queued < self.max_batch and (left := deadline - loop.time()) > 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), left)
                    except asyncio.TimeoutError:
                        break
                    queued = sum(len(t) for t, _ in self._jobs)
            batch = self._take()
            texts = [t for job, _ in batch for t in job]
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._pool, self._predict, texts)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                i = 0
                for job, fut in batch:
                    if not fut.done():
                        fut.set_result(results[i : i + len(job)])
                    i += len(job)
            finally:
                self.pending -= len(texts)
            if self._on_batch is not None:
                self._on_batch(len(texts), time.perf_counter() - t0)
