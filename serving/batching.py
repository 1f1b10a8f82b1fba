"""Dynamic batching: texts from concurrent requests share forward passes.

Requests put their texts on one queue and await a future per text. A single worker task waits a
few milliseconds for company, takes everything queued, sorts it by length (so a batch pads its
short texts to a similar length, not to the longest text in the queue), cuts batches under a size
and a padded-token budget, and runs each batch in a one-thread executor so the event loop keeps
serving while the model computes. The queue is bounded in texts: a request that would overflow it
is refused at once (the app turns that into 429) rather than waiting behind an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

EncodeFn = Callable[[list[str]], tuple[np.ndarray, list[int]]]  # texts -> (normalized vectors, tokens per text)
BatchObserver = Callable[[int, float], None]  # (batch size, seconds)
CHARS_PER_TOKEN = 4  # WordPiece on English prose; only used to estimate padding before tokenizing


class QueueFullError(RuntimeError):
    def __init__(self, queued: int, requested: int, limit: int) -> None:
        super().__init__(f"the queue holds {queued} texts and this request adds {requested}; the limit is {limit} "
                         f"(ARXIV_SERVING_MAX_QUEUE_TEXTS): retry shortly")
        self.limit = limit


class BatcherClosedError(RuntimeError):
    """The batcher stopped taking texts (its model is being replaced); submit to the new one."""


@dataclass(order=True)
class _Item:
    cost: int
    seq: int
    text: str = field(compare=False)
    future: asyncio.Future = field(compare=False)


def cut_batches(costs: Sequence[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Positions of ``costs`` (sorted ascending) grouped so no batch exceeds ``max_batch_size`` items or
    ``max_batch_tokens`` padded tokens (items x the longest one). A single over-budget item is a batch."""
    batches: list[list[int]] = []
    current: list[int] = []
    for position, cost in enumerate(costs):
        if current and (len(current) >= max_batch_size or (len(current) + 1) * cost > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(position)
    if current:
        batches.append(current)
    return batches


class DynamicBatcher:
    def __init__(self, encode: EncodeFn, *, max_batch_size: int = 32, max_batch_tokens: int = 8192,
                 max_wait_s: float = 0.005, max_queue_texts: int = 512, max_seq_length: int = 512,
                 observe_batch: BatchObserver | None = None) -> None:
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue_texts = max_queue_texts
        self.max_seq_length = max_seq_length
        self._observe = observe_batch
        self._pending: list[_Item] = []
        self._queued = 0  # texts accepted and not yet answered (pending plus the batches being computed)
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def closed(self) -> bool:
        return self._closing

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dynamic-batcher")

    def _cost(self, text: str) -> int:
        return min(self.max_seq_length, len(text) // CHARS_PER_TOKEN + 2)

    async def submit(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Embeddings (one row per text, in order) and token counts; ``QueueFullError`` if over the bound."""
        if self._closing:
            raise BatcherClosedError("this model is being replaced")
        if self._queued + len(texts) > self.max_queue_texts:
            raise QueueFullError(self._queued, len(texts), self.max_queue_texts)
        loop = asyncio.get_running_loop()
        items = []
        for text in texts:
            self._seq += 1
            items.append(_Item(self._cost(text), self._seq, text, loop.create_future()))
        self._pending.extend(items)
        self._queued += len(items)
        self._wakeup.set()
        results = await asyncio.gather(*(item.future for item in items))
        return np.stack([vector for vector, _ in results]), [tokens for _, tokens in results]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()  # submit() and close() set it
                continue
            if len(self._pending) < self.max_batch_size and self.max_wait_s > 0 and not self._closing:
                await asyncio.sleep(self.max_wait_s)  # let concurrent requests join this batch
            taken, self._pending = sorted(self._pending), []
            for positions in cut_batches([item.cost for item in taken], self.max_batch_size, self.max_batch_tokens):
                batch = [taken[p] for p in positions]
                live = [item for item in batch if not item.future.done()]  # a disconnected client cancels
                try:
                    if live:
                        await self._compute(loop, live)
                finally:
                    self._queued -= len(batch)

    async def _compute(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            vectors, tokens = await loop.run_in_executor(self._executor, self._encode, [i.text for i in batch])
        except Exception as error:  # the requests get the error; the worker keeps going
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        if self._observe:
            self._observe(len(batch), time.perf_counter() - started)
        for item, vector, count in zip(batch, vectors, tokens, strict=True):
            if not item.future.done():
                item.future.set_result((vector, int(count)))

    async def close(self) -> None:
        """Take no new texts, finish every one already accepted, then release the inference thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
