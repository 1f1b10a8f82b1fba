"""The dynamic batcher with a real model: batches sorted by length, cut by budget, bounded, drained on close."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from serving.backends import load_backend
from serving.batching import BatcherClosedError, DynamicBatcher, QueueFullError, cut_batches

from .conftest import SHORT_TEXTS


def test_cut_batches_respects_size_and_padded_token_budget():
    assert cut_batches([1, 2, 3, 4, 5], max_batch_size=2, max_batch_tokens=100) == [[0, 1], [2, 3], [4]]
    # 3 items of cost 10 pad to 30 tokens; a 4th of cost 20 would pad the batch to 80 > 50
    assert cut_batches([10, 10, 10, 20, 20], max_batch_size=8, max_batch_tokens=50) == [[0, 1, 2], [3, 4]]
    assert cut_batches([500], max_batch_size=8, max_batch_tokens=50) == [[0]]  # one long text still runs
    assert cut_batches([], max_batch_size=8, max_batch_tokens=50) == []


@pytest.fixture(scope="module")
def backend(model_dir: Path):
    return load_backend(model_dir, "torch-fp32", threads=1)


def test_concurrent_requests_share_length_sorted_batches_and_get_their_own_rows(backend):
    batches: list[list[str]] = []

    def recording_encode(texts: list[str]):
        batches.append(texts)
        return backend.encode(texts)

    requests = [[SHORT_TEXTS[0], "a much longer text " * 8], [SHORT_TEXTS[1]], [SHORT_TEXTS[2], SHORT_TEXTS[3], "x y"]]

    async def scenario():
        batcher = DynamicBatcher(recording_encode, max_batch_size=4, max_wait_s=0.05, max_seq_length=256)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        assert batcher.queued == 0
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert [len(b) for b in batches] == [4, 2]  # six texts from three requests: two forward passes
    lengths = [len(t) for batch in batches for t in batch]
    assert lengths == sorted(lengths)  # shortest first, so each batch pads to a similar length
    for texts, (vectors, tokens) in zip(requests, results, strict=True):
        direct, direct_tokens = backend.encode(texts)
        np.testing.assert_allclose(vectors, direct, atol=1e-4)
        assert tokens == direct_tokens


def test_a_full_queue_refuses_and_close_drains_what_was_accepted(backend):
    async def scenario():
        batcher = DynamicBatcher(backend.encode, max_queue_texts=3, max_wait_s=0.05, max_seq_length=256)
        batcher.start()
        accepted = asyncio.create_task(batcher.submit(SHORT_TEXTS[:2]))
        await asyncio.sleep(0)  # let it queue
        with pytest.raises(QueueFullError, match="limit is 3"):
            await batcher.submit(SHORT_TEXTS[:2])
        await batcher.close()  # in flight: still answered
        with pytest.raises(BatcherClosedError):
            await batcher.submit(["late"])
        return await accepted

    vectors, tokens = asyncio.run(scenario())
    assert vectors.shape == (2, 384) and all(t > 2 for t in tokens)
