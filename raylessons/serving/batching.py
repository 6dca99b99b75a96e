"""Dynamic batching for a model replica: a batch forms when the model is free to run it.

Requests queue here while the model runs a forward; as soon as it is free, everything queued (up to
`max_batch_size`) goes into the next forward together. Only a request that finds the model idle waits, for up
to `batch_wait_timeout_s`, for company. Under load, batches therefore grow with the forward's own duration,
and a lone request pays at most the wait.

Why not `@serve.batch`: in Ray 2.60 it forms the next batch while the current one runs, and only the *running*
of batches is serialised (`max_concurrent_batches`). A batch then holds what arrived within
`batch_wait_timeout_s` of its first request. Measured on the Planet replica at concurrency 32, 51 of
82 batches held one request, and the replica paid the batch-1 cost of the forward for almost every request
(`bench/serve_load.py`). A longer wait would grow those batches only by making every lone request slower.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Awaitable, Callable

__all__ = ["Batcher"]


class Batcher:
    """`await batcher.submit(item)` -> `forward([... item ...])`'s row for `item`.

    `forward` is an async function mapping a list of items to one result per item, in order. It runs once at
    a time. An exception it raises reaches every request of that batch (and only those). A request cancelled
    while it waits (client gone, timeout) is dropped from the batch it would have joined. `max_batch_size` and
    `batch_wait_timeout_s` may be changed at any time; the next batch uses them. `batches`, `items` and
    `forward_s` count the forwards that answered, the requests they answered and the seconds they took.
    """

    def __init__(self, forward: Callable[[list], Awaitable[list]], max_batch_size: int = 16,
                 batch_wait_timeout_s: float = 0.002):
        if max_batch_size < 1 or batch_wait_timeout_s < 0:
            raise ValueError(f"max_batch_size must be >= 1 and batch_wait_timeout_s >= 0, "
                             f"got {max_batch_size} and {batch_wait_timeout_s}")
        self.forward = forward
        self.max_batch_size, self.batch_wait_timeout_s = max_batch_size, batch_wait_timeout_s
        self.batches = self.items = 0  # forwards run and requests they answered, since start
        self.forward_s = 0.0  # wall seconds those forwards took, since start
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None  # the replica's (user-code) event loop, at first use
        self._full: asyncio.Event | None = None
        self._drainer: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        """Queue `item` for the next batch and return its row of that batch's forward."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use (or a new loop, as in tests): state of an old loop is dead
            self._loop, self._full, self._drainer = loop, asyncio.Event(), None
            self._queue.clear()
        future = loop.create_future()
        self._queue.append((item, future))
        if len(self._queue) >= self.max_batch_size:
            self._full.set()
        if self._drainer is None or self._drainer.done():  # the model is idle: this request starts a batch
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run forwards until the queue is empty; the first waits up to batch_wait_timeout_s for company."""
        if len(self._queue) < self.max_batch_size and self.batch_wait_timeout_s > 0:
            try:
                await asyncio.wait_for(self._full.wait(), self.batch_wait_timeout_s)
            except asyncio.TimeoutError:
                pass
        while self._queue:
            batch = []
            while self._queue and len(batch) < self.max_batch_size:
                item, future = self._queue.popleft()
                if not future.done():  # cancelled while queued: nobody wants its answer
                    batch.append((item, future))
            if len(self._queue) < self.max_batch_size:
                self._full.clear()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                rows = await self.forward([item for item, _ in batch])
                if len(rows) != len(batch):
                    raise RuntimeError(f"forward returned {len(rows)} rows for a batch of {len(batch)}")
            except asyncio.CancelledError:  # the replica is shutting down: nobody waits forever
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as e:  # noqa: BLE001 - every request of this batch gets the error, the next batch runs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches, self.items = self.batches + 1, self.items + len(batch)
            self.forward_s += time.perf_counter() - started
            for (_, future), row in zip(batch, rows):
                if not future.done():
                    future.set_result(row)
