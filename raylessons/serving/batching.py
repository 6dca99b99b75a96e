"""Dynamic batching for a model replica: a batch forms when the model is free to run it.

Requests queue here while the model runs a forward; as soon as it is free, everything queued (up to
`max_batch_size`) goes into the next forward together. Only a request that finds the model idle waits, for up
to `batch_wait_timeout_s`, for company. Under load, batches therefore grow with the forward's own duration,
and a lone request pays at most the wait.

With `lanes` > 1, up to that many forwards run at once under load, each on what is queued when a lane frees
(split evenly when several lanes are free). A batch that finds nothing else running or waiting runs alone, and
no other starts until it ends: the replica gives a lone request all its threads and a loaded replica one thread
per lane (`replicas.py` says why).

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
    """`await batcher.submit(item)` -> `forward([... item ...], alone)`'s row for `item`.

    `forward` is an async function mapping a list of items to one result per item, in order. Up to `lanes`
    forwards run at once; `alone` is True for a forward that runs by itself: with one lane, every forward; with
    more, one that found no other forward running and nothing else queued (no other starts until it ends). An
    exception `forward` raises reaches every request of that batch (and only those). A request cancelled while it
    waits (client gone, timeout) is dropped from the batch it would have joined. `max_batch_size`,
    `batch_wait_timeout_s` and `lanes` may be changed at any time; the next batch uses them. `batches`, `items`
    and `forward_s` count the forwards that answered, the requests they answered and the seconds they took (summed
    over lanes: two forwards at once for 0.1 s count 0.2 s).
    """

    def __init__(self, forward: Callable[[list, bool], Awaitable[list]], max_batch_size: int = 16,
                 batch_wait_timeout_s: float = 0.0, lanes: int = 1):
        if max_batch_size < 1 or batch_wait_timeout_s < 0 or lanes < 1:
            raise ValueError(f"max_batch_size and lanes must be >= 1 and batch_wait_timeout_s >= 0, "
                             f"got {max_batch_size}, {lanes} and {batch_wait_timeout_s}")
        self.forward = forward
        self.max_batch_size, self.batch_wait_timeout_s, self.lanes = max_batch_size, batch_wait_timeout_s, lanes
        self.batches = self.items = 0  # forwards run and requests they answered, since start
        self.forward_s = 0.0  # wall seconds those forwards took, since start
        self.running = 0  # forwards running now
        self._alone = False  # the forward running now runs alone: no other may start
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None  # the replica's (user-code) event loop, at first use
        self._full: asyncio.Event | None = None  # max_batch_size requests are queued
        self._freed: asyncio.Event | None = None  # a forward ended
        self._drainer: asyncio.Task | None = None
        self._forwards: set[asyncio.Task] = set()

    async def submit(self, item: Any) -> Any:
        """Queue `item` for the next batch and return its row of that batch's forward."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use (or a new loop, as in tests): state of an old loop is dead
            self._loop, self._full, self._freed, self._drainer = loop, asyncio.Event(), asyncio.Event(), None
            self._queue.clear()
            self._forwards.clear()
            self.running, self._alone = 0, False
        future = loop.create_future()
        self._queue.append((item, future))
        if len(self._queue) >= self.max_batch_size:
            self._full.set()
        if self._drainer is None or self._drainer.done():  # nothing is forming batches: this request starts
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Start forwards until the queue is empty. If the model is idle, the first waits up to
        batch_wait_timeout_s for company; each later one starts when a lane is free."""
        if self.running == 0 and len(self._queue) < self.max_batch_size and self.batch_wait_timeout_s > 0:
            try:
                await asyncio.wait_for(self._full.wait(), self.batch_wait_timeout_s)
            except asyncio.TimeoutError:
                pass
        while self._queue:
            if self._alone or self.running >= self.lanes:
                self._freed.clear()
                await self._freed.wait()
                continue
            share = -(-len(self._queue) // (self.lanes - self.running))  # split evenly over the free lanes
            batch = []
            while self._queue and len(batch) < min(self.max_batch_size, share):
                item, future = self._queue.popleft()
                if not future.done():  # cancelled while queued: nobody wants its answer
                    batch.append((item, future))
            if len(self._queue) < self.max_batch_size:
                self._full.clear()
            if not batch:
                continue
            alone = self.lanes == 1 or (self.running == 0 and not self._queue)
            self.running, self._alone = self.running + 1, alone
            task = asyncio.create_task(self._run(batch, alone))
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)

    async def _run(self, batch: list, alone: bool) -> None:
        """One forward of `batch`; its rows (or its error) to the batch's requests."""
        started = time.perf_counter()
        try:
            rows = await self.forward([item for item, _ in batch], alone)
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
            return
        finally:
            self.running -= 1
            self._alone = self._alone and not alone
            self._freed.set()
        self.batches, self.items = self.batches + 1, self.items + len(batch)
        self.forward_s += time.perf_counter() - started
        for (_, future), row in zip(batch, rows):
            if not future.done():
                future.set_result(row)
